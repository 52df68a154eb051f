"""A fake OpenAI-compatible server for tests: the real wire format over real HTTP, scripted per test.

Each request is classified by what it asks for (topic_analysis, lesson_outline, section, quiz,
summary, image). A test queues replies with `script(reply, when=kind)`; a request with no scripted
reply gets a good answer of its kind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.testing
import tornado.web
import ujson

# A real 1x1 PNG, so the service's type sniffing sees an image.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

GOOD_JSON: dict[str, dict[str, Any]] = {
    "topic_analysis": {
        "title": "Tides and the Moon",
        "category": "science",
        "level": "introductory",
        "objectives": ["Explain what causes tides", "Describe spring and neap tides"],
        "key_terms": [
            {"term": "Tide", "definition": "The regular rise and fall of the sea."},
            {"term": "Spring tide", "definition": "A tide with the greatest range."},
        ],
        "prerequisites": ["Gravity"],
    },
    "lesson_outline": {
        "sections": [
            {"title": "What tides are", "points": ["Rise and fall", "Twice a day"]},
            {"title": "The Moon's pull", "points": ["Gravity", "Two bulges"]},
            {"title": "Spring and neap tides", "points": ["The Sun's part"]},
        ]
    },
    "quiz": {
        "misconceptions": [{"claim": "Only the Moon matters.", "correction": "The Sun matters too."}],
        "quiz": [
            {
                "question": "What mainly causes tides?",
                "choices": ["Wind", "The Moon", "Rivers", "Earthquakes"],
                "answer": 1,
                "explanation": "The Moon's gravity raises the bulges.",
            },
            {
                "question": "When are tides largest?",
                "choices": ["Spring tides", "Neap tides", "Never", "Only in winter"],
                "answer": 0,
                "explanation": "Sun and Moon pull together.",
            },
        ],
    },
}


def good_text(kind: str, prompt: str) -> str:
    if kind == "summary":
        return "You now know why the sea rises and falls. Next, read a tide table."
    section = prompt.split("Write section ", 1)[-1].split("\n", 1)[0]
    return f"This part, {section}, explains the idea with a harbour at dawn.\n\nA second paragraph."


@dataclass
class Reply:
    """What the fake sends for one request."""

    status: int = 200
    text: str | None = None  # streamed content; None = the good answer for the request
    body: dict[str, Any] | None = None  # an error body, for status != 200
    headers: dict[str, str] = field(default_factory=dict)
    error_mid_stream: bool = False  # stream part of the answer, then an error object
    drop_mid_stream: bool = False  # stream part of the answer, then close the connection (a crash)
    stall: bool = False  # stream part of the answer (or nothing), then go silent
    ping_every: float = 0  # while stalled, send an SSE `: ping` comment this often (as llama.cpp does)
    # The last chunk's finish_reason; None ends the stream with `[DONE]` and no finish_reason, as
    # llama-cpp-python does to a running answer when another request arrives.
    finish_reason: str | None = "stop"
    usage: bool = True

    @classmethod
    def error(cls, status: int, message: str = "scripted failure", **headers: str) -> Reply:
        return cls(
            status=status,
            body={"error": {"message": message, "type": "test", "code": status}},
            headers=headers,
        )


@dataclass
class Seen:
    kind: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.url = ""  # set by whoever serves it
        self.chunk_delay = 0.0  # seconds between chunks, as a model's tokens come (0: all at once)
        self._script: list[tuple[str | None, Reply]] = []

    def script(self, reply: Reply, when: str | None = None, times: int = 1) -> None:
        self._script.extend([(when, reply)] * times)

    def kinds(self) -> list[str]:
        return [seen.kind for seen in self.requests]

    def next_reply(self, kind: str) -> Reply:
        for index, (when, reply) in enumerate(self._script):
            if when in (None, kind):
                del self._script[index]
                return reply
        return Reply()

    def app(self) -> tornado.web.Application:
        return tornado.web.Application(
            [
                (r"/v1/chat/completions", ChatHandler, {"fake": self}),
                (r"/v1/images/generations", ImageHandler, {"fake": self}),
            ]
        )


@contextlib.contextmanager
def fake_in_thread() -> Iterator[FakeOpenAI]:
    """A FakeOpenAI on a free loopback port, served by an event loop of its own in a thread, for
    tests whose own thread is busy elsewhere (driving a browser, say); its `url` ends in /v1."""
    fake = FakeOpenAI()
    sock, port = tornado.testing.bind_unused_port()
    fake.url = f"http://127.0.0.1:{port}/v1"
    loop = asyncio.new_event_loop()
    serving = threading.Event()
    servers: list[tornado.httpserver.HTTPServer] = []

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(fake.app())
        server.add_socket(sock)
        servers.append(server)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        serving.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not serving.wait(10):
        raise RuntimeError("the fake model server did not start")
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(servers[0].stop)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


def classify(body: dict[str, Any]) -> str:
    format_ = body.get("response_format") or {}
    if format_.get("type") == "json_schema":
        return format_["json_schema"]["name"]
    prompt = body["messages"][-1]["content"] if body.get("messages") else ""
    for name in GOOD_JSON:
        if f"({name})" in prompt:
            return name
    if format_.get("type") == "json_object":
        properties = format_.get("schema", {}).get("properties", {})
        return (
            "lesson_outline"
            if "sections" in properties
            else "quiz"
            if "quiz" in properties
            else "topic_analysis"
        )
    return "section" if "Write section" in prompt else "summary"


class FakeHandler(tornado.web.RequestHandler):
    def initialize(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.gone = asyncio.Event()

    def on_connection_close(self) -> None:
        self.gone.set()  # the client hung up: a stalled answer can stop waiting

    def record(self, kind: str, body: dict[str, Any]) -> Reply:
        self.fake.requests.append(Seen(kind, body, dict(self.request.headers), time.monotonic()))
        return self.fake.next_reply(kind)

    def send_error_reply(self, reply: Reply) -> None:
        self.set_status(reply.status)
        for name, value in reply.headers.items():
            self.set_header(name.replace("_", "-"), value)
        self.set_header("Content-Type", "application/json")
        self.finish(ujson.dumps(reply.body))


class ChatHandler(FakeHandler):
    async def post(self) -> None:
        body = ujson.loads(self.request.body)
        kind = classify(body)
        reply = self.record(kind, body)
        if reply.status != 200:
            self.send_error_reply(reply)
            return
        prompt = body["messages"][-1]["content"]
        text = (
            reply.text
            if reply.text is not None
            else (ujson.dumps(GOOD_JSON[kind]) if kind in GOOD_JSON else good_text(kind, prompt))
        )
        self.set_header("Content-Type", "text/event-stream")
        pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
        if reply.error_mid_stream or reply.stall or reply.drop_mid_stream:
            pieces = pieces[: len(pieces) // 2]
        for piece in pieces:
            await self.send({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            if self.fake.chunk_delay:
                await asyncio.sleep(self.fake.chunk_delay)
        if reply.error_mid_stream:
            await self.send({"error": {"message": "the model crashed mid-answer", "type": "server_error"}})
            self.finish()
            return
        if reply.drop_mid_stream:
            self.request.connection.detach().close()  # no end of the chunked body: the peer is gone
            self._finished = True  # nothing more can be written; Tornado must not try
            return
        if reply.stall:
            await self.stall(reply.ping_every)
            return
        if reply.finish_reason is not None:
            await self.send({"choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]})
        if reply.usage and body.get("stream_options", {}).get("include_usage"):
            usage = {"prompt_tokens": 11, "completion_tokens": len(pieces), "total_tokens": 11 + len(pieces)}
            await self.send({"choices": [], "usage": usage})
        self.write("data: [DONE]\n\n")
        self.finish()

    async def stall(self, ping_every: float) -> None:
        """Send no token until the client gives up; bytes (comments) still flow with `ping_every`."""
        while not self.gone.is_set():
            try:
                await asyncio.wait_for(self.gone.wait(), ping_every or None)
            except TimeoutError:
                self.write(": ping\n\n")
                try:
                    await self.flush()
                except tornado.iostream.StreamClosedError:
                    return

    async def send(self, chunk: dict[str, Any]) -> None:
        chunk = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "fake",
            **chunk,
        }
        self.write(f"data: {ujson.dumps(chunk)}\n\n")
        await self.flush()


class ImageHandler(FakeHandler):
    async def post(self) -> None:
        reply = self.record("image", ujson.loads(self.request.body))
        if reply.status != 200:
            self.send_error_reply(reply)
            return
        self.finish({"created": 0, "data": [{"b64_json": base64.b64encode(PNG).decode()}]})
