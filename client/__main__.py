"""orchestrate TOPIC (or python -m client TOPIC): run a topic through the service, watch its five
steps, save the lesson."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests
from rich.console import Console

from client.api import API, AuthError, ClientError, authorize, unreachable
from client.files import OutputExists, OutputRefused, check_out_dir, save_lesson
from client.poll import SessionPoller
from client.stream import SessionStream
from client.ui import JsonView, ProgressView

OK, SESSION_FAILED, USAGE, NO_SERVICE, INTERRUPTED = 0, 1, 2, 3, 130
NOT_AUTHORIZED = 1  # the service wants an API key, or refused the one given: like a failed session
API_KEY_ENV = "ORCH_API_KEY"
DEFAULT_URL = "http://localhost:8080"
EPILOG = """examples:
  %(prog)s "photosynthesis"
  %(prog)s "the French Revolution" --out lessons/
  %(prog)s "photosynthesis" --quiet     # progress only, then where the files went
  %(prog)s "binary search" --json | jq -c 'select(.type == "step-complete")'
  %(prog)s --session 6f1c...   # attach to a session that already exists
  %(prog)s "photosynthesis" --transport=poll   # long polling, where an event stream is cut off
  ORCH_API_KEY=... %(prog)s "photosynthesis"   # a service that needs an API key

exit status: 0 the lesson was saved; 1 the session failed or was cancelled, or the service wants an
API key or refused the one given; 2 bad arguments, an output folder that cannot be written, or a
lesson file that exists already (without --force); 3 the service could not be reached, answered
with an error, or the stream could not be resumed; 130 stopped with Ctrl-C (the session goes on)."""


class EventSource(Protocol):
    """A session's events, each once and in order: SessionStream (SSE) or SessionPoller (polling)."""

    last_id: int

    def events(self) -> Iterator[dict[str, Any]]: ...


TRANSPORTS: dict[str, Callable[..., EventSource]] = {"sse": SessionStream, "poll": SessionPoller}


@dataclass
class RunState:
    """What main() needs to know when a run stops early: the session, once there is one."""

    session_id: str | None = None


def program() -> list[str]:
    """The command this client was started as, to show in its help and in commands to run next."""
    started = Path(sys.argv[0])
    if started.name == "__main__.py":  # python -m client: the same interpreter, as it was typed
        return [sys.orig_argv[0] if sys.orig_argv else "python", "-m", "client"]
    if started.suffix != ".py" and started.name:  # the console script, `orchestrate`
        on_path = shutil.which(started.name)
        found = on_path is not None and Path(on_path).resolve() == started.resolve()
        return [started.name if found else str(sys.argv[0])]
    return ["python", "-m", "client"]


def attach_command(args: argparse.Namespace, session_id: str, *extra: str) -> str:
    """The exact command that attaches to `session_id` with this run's options (never its API key)."""
    words = [*program(), "--session", session_id]
    if args.url != DEFAULT_URL:
        words += ["--url", args.url]
    if args.out != Path("."):
        words += ["--out", str(args.out)]
    if args.transport != "sse":
        words.append(f"--transport={args.transport}")
    words += [f"--{flag}" for flag in ("json", "quiet", "force") if getattr(args, flag)]
    words += [word for word in extra if word not in words]
    return shlex.join(words)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=" ".join(program()),
        description="Turn a topic into a lesson with the Orchestrator service, showing each step live.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("topic", nargs="?", help="what the lesson is about")
    parser.add_argument("--url", default=DEFAULT_URL, help="the service (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to write the lesson (default: .)")
    parser.add_argument(
        "--force", action="store_true", help="overwrite lesson files already in --out (refused without it)"
    )
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the raw events, one JSON object a line")
    shown.add_argument(
        "--quiet", "-q", action="store_true", help="show progress only, not the lesson's text as it streams"
    )
    parser.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS, reverse=True),
        default="sse",
        help="how to follow the session: sse, one Server-Sent Events stream (default), or poll, long "
        "polling (GET /api/sessions/{id}/events), for proxies that hold an event stream back",
    )
    parser.add_argument("--session", metavar="ID", help="attach to an existing session, not a new one")
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=None,
        help=f"the API key, for a service that needs one (default: ${API_KEY_ENV}, which keeps it out of "
        "the process list); sent as Authorization: Bearer on every request",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="reconnects in a row before giving up (default: 5)",
    )
    args = parser.parse_args(argv)
    if args.topic is not None and not args.topic.strip():
        parser.error('the topic is blank: say what the lesson is about, e.g. "photosynthesis"')
    if args.session is not None and not args.session.strip():
        parser.error("--session needs the id of a session")
    if args.topic is not None:
        args.topic = args.topic.strip()
    if bool(args.topic) == bool(args.session):
        parser.error("give a topic, or --session ID to attach to an existing session (not both)")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    if args.api_key is None:
        args.api_key = os.environ.get(API_KEY_ENV, "")
    args.api_key = args.api_key.strip()
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in args.api_key):
        parser.error(f"the API key (--api-key or {API_KEY_ENV}) must be printable ASCII with no spaces")
    return args


def run(
    args: argparse.Namespace, view: ProgressView | JsonView, http: requests.Session, state: RunState
) -> int:
    api = API(http, args.url)
    session = api.get_session(args.session) if args.session else api.create_session(args.topic)
    state.session_id = session["id"]
    view.header(session["topic"], session["id"])

    def reconnecting(attempt: int, delay: float, why: str) -> None:
        view.notice(f"{why}; resuming after event {source.last_id} in {delay:g} s ({attempt}/{args.retries})")

    # Either transport hands over the same events; what is shown and saved does not depend on it.
    follow = TRANSPORTS[args.transport]
    source = follow(http, api.base_url, session["id"], args.retries, on_reconnect=reconnecting)
    last: dict[str, Any] = {}
    with view:
        for last in source.events():
            view.show(last)
    if last.get("type") == "error":
        data = last["data"]
        where = f" at {data['step']}" if data.get("step") else ""
        status = data.get("status", "failed")
        print(f"error: the session was {status}{where}: {data.get('error')}", file=sys.stderr)
        return SESSION_FAILED
    saved = save_lesson(api, session["id"], last["data"]["result"], args.out, force=args.force)
    view.saved([("Lesson saved to", saved.markdown)] + [("Image saved to", path) for path in saved.images])
    return OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # Before any session is made: a run whose lesson could not be saved is not started.
        check_out_dir(args.out)
    except OutputRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    if args.json:
        view: ProgressView | JsonView = JsonView()
    else:
        view = ProgressView(Console(highlight=False, emoji=False), quiet=args.quiet)
    state = RunState()
    with requests.Session() as http:
        authorize(http, args.api_key)
        try:
            return run(args, view, http, state)
        except OutputExists as exc:
            # Only saving raises it, so the session is known: the command that saves its lesson anyway.
            quietly = () if args.json else ("--quiet",)
            again = attach_command(args, state.session_id or "ID", *quietly, "--force")
            print(
                f"error: {exc}. The service keeps the lesson: overwrite with\n  {again}\n"
                "or save it elsewhere with --out instead of --force",
                file=sys.stderr,
            )
            return USAGE
        except AuthError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return NOT_AUTHORIZED
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except requests.RequestException as exc:
            print(f"error: {unreachable(args.url, exc)}", file=sys.stderr)
        except KeyboardInterrupt:
            if state.session_id is None:
                print("\nstopped before a session was started", file=sys.stderr)
            else:
                print(
                    "\nstopped watching; the session goes on. Attach again with\n"
                    f"  {attach_command(args, state.session_id)}",
                    file=sys.stderr,
                )
            return INTERRUPTED
    return NO_SERVICE


if __name__ == "__main__":
    sys.exit(main())
