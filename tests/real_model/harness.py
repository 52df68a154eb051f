"""The real_model tests' harness: llama-cpp-python's server with SmolLM2-135M, the service, their logs.

The model server is started the way `make model-server` starts it, through modelserver/serve.py, by
the model venv's python (`MODEL_PYTHON`, default `.venv-model/bin/python`; `make test-model` builds
it). The service is a real `server.py` child process (tests.server_process) pointed at it, and the
tests talk to both over real HTTP. Every wait has a deadline; a failing test shows the logs of the
processes it used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from client.sse import SSEEvent, SSEParser
from tests.server_process import PROJECT, ServerProcess

# Relative to the project; never resolved, since the venv's python is a symlink to the base one.
MODEL_PYTHON = PROJECT / os.environ.get("MODEL_PYTHON", ".venv-model/bin/python")
SERVE = PROJECT / "modelserver" / "serve.py"
MODEL_ALIAS = "smollm2"
# Loading takes a few seconds here; a cold disk cache or a busy machine, more.
MODEL_START_TIMEOUT = 90
READY = "Uvicorn running on"
# llama.cpp's timings, printed (verbose) at the end of every completion: the tokens it generated.
EVAL_RUNS = re.compile(r"^\s*llama_perf_context_print:\s+eval time =\s+[\d.]+ ms /\s+(\d+) runs", re.M)
# What llama-cpp-python prints when it stops streaming an answer before its end (an interruption,
# or the reader went away).
DISCONNECTED = "Disconnected from client"
CHAT_POST = '"POST /v1/chat/completions HTTP/1.1"'
# llama.cpp's ~2,000 lines about loading the model ("create_tensor: …", "print_info: …"): left out of
# the log a failing test shows, all but its timings and the launcher's line.
LOAD_NOISE = re.compile(r"^(?!llama_perf_context_print:|modelserver:)[a-z_]+:")

# Processes whose logs a failing test shows: label → the log so far.
LOGS: dict[str, Callable[[], str]] = {}
LOG_TAIL = 150


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(text: str, lines: int = LOG_TAIL) -> str:
    kept = text.splitlines()[-lines:]
    return "\n".join(kept)


class ModelServer:
    """One llama-cpp-python server on a fixed loopback port, started through modelserver/serve.py.

    Its output (the launcher's line, llama.cpp's load log and per-answer timings, uvicorn's access
    log) is kept in `lines` across restarts; `mark()` and `since()` read what one test caused.
    """

    def __init__(self, port: int, *options: str, label: str = "model server") -> None:
        if not MODEL_PYTHON.exists():
            pytest.fail(
                f"{MODEL_PYTHON} is missing: run `make test-model`, which builds the model venv first"
            )
        self.port = port
        self.options = options
        self.label = f"{label} :{port}"
        self.lines: list[str] = []
        self.load_seconds = 0.0
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        LOGS[self.label] = self.log_without_load_noise

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = MODEL_START_TIMEOUT) -> ModelServer:
        """Start it and wait until it answers, or fail with its log."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        started = time.monotonic()
        self.lines.append(
            f"--- test harness: starting {SERVE.name} --port {self.port} {' '.join(self.options)}\n"
        )
        ready_at = len(self.lines)
        self.proc = subprocess.Popen(
            [str(MODEL_PYTHON), str(SERVE), "--port", str(self.port), *self.options],
            cwd=PROJECT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = started + timeout
        while not any(READY in line for line in self.lines[ready_at:]):
            if self.proc.poll() is not None:
                self._reader.join(5)
                log = tail(self.log_text())
                raise AssertionError(f"the model server exited ({self.proc.returncode}):\n{log}")
            if time.monotonic() > deadline:
                self.kill()
                log = tail(self.log_text())
                raise AssertionError(f"the model server was not ready in {timeout} s:\n{log}")
            time.sleep(0.05)
        self.load_seconds = time.monotonic() - started
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def kill(self) -> None:
        """SIGKILL: the launcher exec'd llama_cpp.server, so this is the server itself."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.lines.append(f"--- test harness: killed, exit status {self.proc.returncode}\n")

    def restart(self, timeout: float = MODEL_START_TIMEOUT) -> ModelServer:
        self.kill()
        return self.start(timeout)

    def close(self) -> None:
        self.kill()
        LOGS.pop(self.label, None)

    def log_text(self) -> str:
        return "".join(self.lines)

    def log_without_load_noise(self) -> str:
        return "".join(line for line in self.lines if not LOAD_NOISE.match(line))

    def mark(self) -> int:
        return len(self.lines)

    def since(self, mark: int) -> str:
        return "".join(self.lines[mark:])

    def eval_runs(self, mark: int = 0) -> list[int]:
        """llama.cpp's `eval time … / N runs` of each answer finished since `mark`: one per answer."""
        return [int(n) for n in EVAL_RUNS.findall(self.since(mark))]

    def chat_requests(self, mark: int = 0) -> int:
        """Chat completion requests the server has answered (its access log) since `mark`."""
        return self.since(mark).count(CHAT_POST)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                log = tail(self.log_without_load_noise())
                raise AssertionError(f"{what} never happened in {timeout} s:\n{log}")
            time.sleep(0.05)


# The service: short prose answers (JSON ones keep llm_json_max_tokens's default, which this model
# needs: its outlines ramble past 400 tokens), quick retries, and a heartbeat every second so that a
# stream read comes back often enough to notice its deadline.
SERVICE_OPTIONS = (
    "--provider=openai",
    f"--llm_model={MODEL_ALIAS}",
    "--llm_json_mode=json_object",
    "--llm_max_tokens=32",
    "--llm_idle_timeout=60",
    "--retries=2",
    "--retry_initial_delay=0.2",
    "--retry_max_delay=1",
    "--step_timeout=400",
    "--heartbeat_interval=1",
    "--rate_limit=",
    "--create_rate_limit=",
)


@contextlib.contextmanager
def running_service(model: ModelServer, *options: str) -> Iterator[ServerProcess]:
    """server.py against `model`, its log shown if a test fails; later options override SERVICE_OPTIONS."""
    service = ServerProcess(*SERVICE_OPTIONS, f"--llm_base_url={model.base_url}", *options)
    label = f"service :{service.port}"
    LOGS[label] = service.log_text
    try:
        yield service
    finally:
        service.kill()
        LOGS.pop(label, None)


# -- talking to the service ------------------------------------------------------------------------


@dataclass
class Event:
    type: str
    step_id: str | None
    data: dict[str, Any]


def create(service: ServerProcess, topic: str) -> str:
    response = requests.post(f"{service.url}/api/sessions", json={"topic": topic}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def cancel(service: ServerProcess, session_id: str) -> None:
    requests.post(f"{service.url}/api/sessions/{session_id}/cancel", timeout=10)


def events(service: ServerProcess, session_id: str, timeout: float) -> Iterator[Event]:
    """Run a session and yield its events as they arrive, until its stream ends.

    Fails if the stream is still open after `timeout` seconds: the service's heartbeat (every second
    here) makes sure a read comes back often enough to notice.
    """
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    with requests.post(
        f"{service.url}/api/sessions/{session_id}/run", stream=True, timeout=(5, 10)
    ) as response:
        assert response.status_code == 200, response.text
        for chunk_events in _events_by_chunk(response):
            for sse in chunk_events:
                body = json.loads(sse.data)
                seen.append(body["type"])
                yield Event(body["type"], body.get("step_id"), body.get("data") or {})
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the session's stream was still open after {timeout} s; events so far: {_summary(seen)}"
                )


def _events_by_chunk(response: requests.Response) -> Iterator[list[SSEEvent]]:
    # The project's SSE parser over the chunks as they come; a heartbeat is a chunk with no event.
    parser = SSEParser()
    for chunk in response.iter_content(chunk_size=None):
        yield parser.feed(chunk)


def _summary(types: list[str]) -> str:
    out: list[str] = []
    for kind in types:
        if out and out[-1].startswith(kind + " x"):
            count = int(out[-1].rsplit("x", 1)[1]) + 1
            out[-1] = f"{kind} x{count}"
        elif out and out[-1] == kind:
            out[-1] = f"{kind} x2"
        else:
            out.append(kind)
    return ", ".join(out)


def run_session(service: ServerProcess, topic: str, timeout: float) -> list[Event]:
    """Create a session, run it and read its stream to the end."""
    return list(events(service, create(service, topic), timeout))


def terminal(events_seen: list[Event]) -> Event:
    """The stream's last event, which must be `final` or `error`: a stream that just stopped is a bug."""
    assert events_seen, "the stream ended without a single event"
    last = events_seen[-1]
    assert last.type in ("final", "error"), (
        f"the stream ended without final or error: {describe(events_seen)}"
    )
    return last


def describe(events_seen: list[Event]) -> str:
    """The events without their deltas, for assertion messages."""
    kept = [
        f"{e.type}({e.step_id}): {e.data.get('reason') or e.data.get('error') or ''}".rstrip(": ")
        for e in events_seen
        if e.type != "step-delta"
    ]
    deltas = sum(e.type == "step-delta" for e in events_seen)
    return f"{deltas} step-deltas; " + "; ".join(kept)


def reasons(events_seen: list[Event]) -> list[str]:
    """The reasons of every step-retry and the errors of every step-error and error."""
    return [
        e.data.get("reason") or e.data.get("error") or ""
        for e in events_seen
        if e.type in ("step-retry", "step-error", "error")
    ]
