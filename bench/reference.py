"""A yardstick for `python -m bench compare`: the service's contract on the stack a user would otherwise pick.

A minimal Starlette + sse-starlette app served by plain uvicorn (asyncio loop, h11 parser), with the
sessions in a dict: no validation, no store, no limits, no auth. It streams the same events as the
service with its builtin provider: the lesson texts come from the same composer and are cut into
the same pieces, so every step has as many `step-delta` events as the service's, with text of the
same size, and the payloads have the same JSON shapes. A run goes on in a task of its own; every
stream of a session replays its events from the first (or from after its Last-Event-ID, as the
service does) and then follows the live ones, so any number of subscribers each get every event.

    python -m bench.reference --port 0 [--pace CHARS_PER_SECOND]

prints `listening on http://127.0.0.1:PORT` to stderr once the port is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.models import STEP_NAMES, rfc3339
from workflow.lesson import text as lesson_text
from workflow.providers.builtin import chunk_text, compose

SSE_RETRY_MS = 3000  # what the service sends first on every stream
# The service's generate-images step draws two diagrams and reports each as one delta.
IMAGES = {
    "outline-map.svg": "Lesson map",
    "key-terms.svg": "Key terms",
}


def now_text() -> str:
    return rfc3339(datetime.now(UTC))


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass
class Session:
    """A session and its event log, kept in memory; appending wakes every stream that waits."""

    id: str
    topic: str
    status: str = "pending"
    created_at: str = field(default_factory=now_text)
    result: dict[str, Any] | None = None
    events: list[tuple[int, str]] = field(default_factory=list)  # (id, JSON payload)
    _appended: asyncio.Event = field(default_factory=asyncio.Event)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "stream_url": f"/api/sessions/{self.id}/run",
        }

    def emit(self, event_type: str, data: dict[str, Any], step_id: str | None = None) -> None:
        body: dict[str, Any] = {"type": event_type, "session_id": self.id}
        if step_id:
            body["step_id"] = step_id
        body["data"] = data
        body["timestamp"] = now_text()
        self.events.append((len(self.events) + 1, dumps(body)))
        # Wake the streams waiting now; the next ones wait on a fresh event.
        self._appended.set()
        self._appended = asyncio.Event()

    async def appended(self) -> None:
        await self._appended.wait()

    @property
    def finished(self) -> bool:
        return self.status == "completed"


class Runner:
    """Runs sessions through the five steps, writing text at `pace` characters per second (0: at once)."""

    def __init__(self, pace: float) -> None:
        self.pace = pace
        self.tasks: set[asyncio.Task[None]] = set()  # held, so a running task is not collected

    def start(self, session: Session) -> None:
        session.status = "running"
        task = asyncio.create_task(self._run(session))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _step(self, session: Session, index: int, pieces: Sequence[str], paced: bool = True) -> str:
        step_id, name = f"step-{index + 1}", STEP_NAMES[index]
        began = time.perf_counter()
        session.emit("step-start", {"step_name": name, "step_index": index}, step_id)
        total, written = sum(len(piece) for piece in pieces), 0
        for piece in pieces:
            written += len(piece)
            session.emit("step-delta", {"delta": piece, "progress": written * 100 // total}, step_id)
            # Like the builtin provider: sleep after each piece, even 0 s, so runs share the loop.
            await asyncio.sleep(len(piece) / self.pace if paced and self.pace > 0 else 0)
        output = "".join(pieces)
        duration_ms = int(1000 * (time.perf_counter() - began))
        session.emit(
            "step-complete",
            {"step_name": name, "output": output, "duration": duration_ms, "progress": 100},
            step_id,
        )
        return output

    async def _run(self, session: Session) -> None:
        began = time.perf_counter()
        analysis = compose.analyze_topic(session.topic)
        await self._step(session, 0, chunk_text(lesson_text.analysis_text(analysis)))
        outline = compose.generate_outline(analysis)
        await self._step(session, 1, chunk_text(lesson_text.outline_text(outline)))
        content = compose.create_content(analysis, outline)
        await self._step(session, 2, chunk_text(lesson_text.content_text(outline, content)))
        urls = {name: f"/api/sessions/{session.id}/images/{name}" for name in IMAGES}
        notes = [f"Drew {caption.lower()} ({name}).\n" for name, caption in IMAGES.items()]
        await self._step(session, 3, notes, paced=False)
        summary = await self._step(session, 4, chunk_text(compose.write_summary(analysis, outline, content)))
        figures = {name: (caption, urls[name]) for name, caption in IMAGES.items()}
        session.result = {
            "lesson": lesson_text.lesson_markdown(analysis, outline, content, summary, figures),
            "images": urls,
            "summary": summary,
            "duration": int(1e9 * (time.perf_counter() - began)),
            "completed_at": now_text(),
            "metadata": {"provider": "builtin", "model": None},
        }
        session.status = "completed"
        session.emit("final", {"result": session.result})


def make_app(pace: float) -> Starlette:
    sessions: dict[str, Session] = {}
    runner = Runner(pace)

    async def create(request: Request) -> Response:
        body = await request.json()
        session = Session(str(uuid.uuid4()), str(body.get("topic", "")))
        sessions[session.id] = session
        return JSONResponse(session.describe(), status_code=201)

    async def follow(session: Session, after: int) -> AsyncIterator[ServerSentEvent]:
        connected = {"type": "connected", "session_id": session.id, "data": {"last_event_id": after}}
        connected["timestamp"] = now_text()
        yield ServerSentEvent(data=dumps(connected), retry=SSE_RETRY_MS)
        sent = min(after, len(session.events))  # ids are positions in the log, from 1
        while True:
            # No await between this check and the wait below, so no event can slip in unseen.
            while sent < len(session.events):
                event_id, payload = session.events[sent]
                sent += 1
                yield ServerSentEvent(data=payload, id=str(event_id))
            if session.finished:
                return
            await session.appended()

    async def run(request: Request) -> Response:
        session = sessions.get(request.path_params["session_id"])
        if session is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        if session.status == "pending":
            runner.start(session)
        return EventSourceResponse(follow(session, int(request.headers.get("last-event-id") or 0)))

    async def result(request: Request) -> Response:
        session = sessions.get(request.path_params["session_id"])
        if session is None or session.result is None:
            return JSONResponse({"error": "no result"}, status_code=404)
        return JSONResponse(session.result)

    return Starlette(
        routes=[
            Route("/api/sessions", create, methods=["POST"]),
            Route("/api/sessions/{session_id}/run", run, methods=["GET", "POST"]),
            Route("/api/sessions/{session_id}/result", result, methods=["GET"]),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--pace", type=float, default=0.0, help="characters per second (0: at once)")
    args = parser.parse_args(argv)
    # A user holding thousands of streams would raise the limit too (ulimit -n); the service does.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = uvicorn.Config(
        make_app(args.pace),
        host=args.host,
        port=args.port,
        loop="asyncio",
        http="h11",
        lifespan="off",
        timeout_graceful_shutdown=5,  # streams still open at SIGTERM must not hold the exit forever
    )
    # Bound here, not by uvicorn, so the port that port 0 gave is known and can be announced. As
    # IPPROTO_TCP, as asyncio binds it for uvicorn on its own: asyncio sets TCP_NODELAY only on
    # sockets of that protocol, and without it every response uvicorn writes in two pieces (head,
    # then body) waits on Nagle's algorithm for the client's delayed ACK, 40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(config.backlog)
    print(f"reference: listening on http://{args.host}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
