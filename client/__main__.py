"""python -m client TOPIC: run a topic through the service, watch its five steps, save the lesson."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from rich.console import Console

from client.api import API, AuthError, ClientError, authorize, unreachable
from client.files import save_lesson
from client.stream import SessionStream
from client.ui import JsonView, ProgressView

OK, SESSION_FAILED, USAGE, NO_SERVICE, INTERRUPTED = 0, 1, 2, 3, 130
NOT_AUTHORIZED = 1  # the service wants an API key, or refused the one given: like a failed session
API_KEY_ENV = "ORCH_API_KEY"
EPILOG = """examples:
  python -m client "photosynthesis"
  python -m client "the French Revolution" --out lessons/
  python -m client "binary search" --json | jq -c 'select(.type == "step-complete")'
  python -m client --session 6f1c...   # attach to a session that already exists
  ORCH_API_KEY=... python -m client "photosynthesis"   # a service that needs an API key

exit status: 0 the lesson was saved; 1 the session failed or was cancelled, or the service wants an
API key or refused the one given; 2 bad arguments; 3 the service could not be reached, answered with
an error, or the stream could not be resumed."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m client",
        description="Turn a topic into a lesson with the Orchestrator service, showing each step live.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("topic", nargs="?", help="what the lesson is about")
    parser.add_argument("--url", default="http://localhost:8080", help="the service (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to write the lesson (default: .)")
    parser.add_argument("--json", action="store_true", help="print the raw events, one JSON object a line")
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


def run(args: argparse.Namespace, view: ProgressView | JsonView, http: requests.Session) -> int:
    api = API(http, args.url)
    session = api.get_session(args.session) if args.session else api.create_session(args.topic)
    view.header(session["topic"], session["id"])

    def reconnecting(attempt: int, delay: float, why: str) -> None:
        view.notice(f"{why}; resuming after event {stream.last_id} in {delay:g} s ({attempt}/{args.retries})")

    stream = SessionStream(http, api.base_url, session["id"], args.retries, on_reconnect=reconnecting)
    last: dict[str, Any] = {}
    with view:
        for last in stream.events():
            view.show(last)
    if last.get("type") == "error":
        data = last["data"]
        where = f" at {data['step']}" if data.get("step") else ""
        status = data.get("status", "failed")
        print(f"error: the session was {status}{where}: {data.get('error')}", file=sys.stderr)
        return SESSION_FAILED
    saved = save_lesson(api, session["id"], last["data"]["result"], args.out)
    view.saved([f"Lesson saved to {saved.markdown}"] + [f"Image saved to {path}" for path in saved.images])
    return OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    view = JsonView() if args.json else ProgressView(Console(highlight=False, emoji=False))
    with requests.Session() as http:
        authorize(http, args.api_key)
        try:
            return run(args, view, http)
        except AuthError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return NOT_AUTHORIZED
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except requests.RequestException as exc:
            print(f"error: {unreachable(args.url, exc)}", file=sys.stderr)
        except KeyboardInterrupt:
            print("\nstopped watching; the session goes on (attach again with --session)", file=sys.stderr)
            return INTERRUPTED
    return NO_SERVICE


if __name__ == "__main__":
    sys.exit(main())
