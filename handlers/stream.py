"""POST and GET /api/sessions/{id}/run: a session's events as a Server-Sent Events stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream, StreamClosedError
from tornado.util import ObjectDict

from core import metrics
from core.errors import InvalidInput
from core.events import CONNECTED, Event, make_event
from handlers.base import BaseHandler
from listener.long_lived import slim_connection
from workflow.eventlog import CloseReason, Subscription

H = TypeVar("H")  # the handler a tracker keeps

log = logging.getLogger("orchestrator.stream")
EVENT_ID = re.compile(r"^[0-9]{1,19}$")


def parse_event_id(raw: str, name: str) -> int:
    """A position in a session's log as a client gives it (`Last-Event-ID`, `?after=`): 0 if blank."""
    raw = raw.strip()
    if not raw:
        return 0
    # Plain ASCII digits that fit the ids' 64 bits: int() would also take "²", "①" and 4,300 digits.
    if not EVENT_ID.match(raw) or int(raw) >= 2**63:
        raise InvalidInput(f"{name} must be a non-negative integer below 2^63")
    return int(raw)


class OpenRequests(Generic[H]):
    """Requests still being answered (streams, held polls), so a shutdown can let them end cleanly
    before it closes the sockets."""

    def __init__(self) -> None:
        self._handlers: set[H] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._handlers)

    def __iter__(self) -> Iterator[H]:
        return iter(list(self._handlers))

    def add(self, handler: H) -> None:
        self._handlers.add(handler)
        self._empty.clear()

    def discard(self, handler: H) -> None:
        self._handlers.discard(handler)
        if not self._handlers:
            self._empty.set()

    async def wait_closed(self, timeout: float) -> bool:
        """True once every one has ended; False if some were still open after `timeout` s."""
        try:
            async with asyncio.timeout(timeout):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True


class OpenStreams(OpenRequests["RunHandler"]):
    """The streams still being written, and their heartbeats.

    One timer for all of them, every half `heartbeat_interval`, wakes each stream that has sent
    nothing for `heartbeat_interval` s to send a heartbeat comment: so a silent stream gets one
    within 1 to 1.5 intervals of its last write, and no stream keeps a timer of its own.
    """

    def __init__(self, heartbeat_interval: float) -> None:
        super().__init__()
        self.heartbeat_interval = heartbeat_interval
        self._ticker: asyncio.TimerHandle | None = None

    def add(self, handler: RunHandler) -> None:
        super().add(handler)
        if self._ticker is None:
            self._schedule()

    def _schedule(self) -> None:
        self._ticker = asyncio.get_running_loop().call_later(self.heartbeat_interval / 2, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        now = asyncio.get_running_loop().time()
        for handler in list(self._handlers):
            handler.heartbeat_if_silent(now, self.heartbeat_interval)
        if self._handlers:
            self._schedule()


class EventsAccess(BaseHandler):
    """Who may read a session's events, whether as a stream (GET /run) or by polling (GET /events).

    With keys configured, a GET may show the session's stream token (`?token=`) instead of a key,
    since EventSource cannot send headers; the token opens that one session's events, by GET only.
    A GET is refused from an origin CORS does not allow, like any state change (the stream's GET
    can start work). Keys, the owner check (where the session is read), Host and rate limits are
    BaseHandler's.
    """

    def other_credentials(self) -> bool:
        token = self.get_query_argument("token", None)
        if self.request.method != "GET" or token is None:
            return False
        return self.access.tokens.valid(self.path_args[0], token)

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method == "GET":
            self.access.check_origin(self.request)

    def _socket(self) -> IOStream | None:
        # HTTP/1 connections have the stream; the interface does not promise one.
        return getattr(self.request.connection, "stream", None)

    def _connection_open(self) -> bool:
        stream = self._socket()
        return stream is not None and not stream.closed()


class RunHandler(EventsAccess):
    """One SSE connection, owning exactly one subscription.

    POST starts a pending session (409 otherwise) and streams it from the start. GET is what
    EventSource sends: it starts a pending session or attaches to it, replaying from after
    Last-Event-ID (header, or `?last_event_id=` for a first request that cannot set headers).
    """

    subscription: Subscription | None = None
    streamed = False  # answered with an event stream (the request metrics time it apart)
    _waiter: asyncio.Future[None] | None = None
    _last_sent = 0.0  # the loop's time of the last write
    _direct: IOStream | None = None  # the socket live events are written to as they are offered
    _chunked = True  # whether they are framed as HTTP/1.1 chunks
    _heartbeat_due = False

    async def post(self, session_id: str) -> None:
        await self._stream(session_id, after_id=0, must_start=True)

    async def get(self, session_id: str) -> None:
        await self._stream(session_id, after_id=self._last_event_id(), must_start=False)

    def _last_event_id(self) -> int:
        raw = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", "")
        return parse_event_id(raw, "Last-Event-ID")

    async def _stream(self, session_id: str, after_id: int, must_start: bool) -> None:
        # Whose sessions this caller sees is checked where the session is read. A caller with a
        # stream token (and no key) has no owner filter: prepare() accepted the token, which opens
        # this one session only.
        subscription = await self.engine.subscribe(
            session_id, after_id, start=True, must_start=must_start, owner=self.owner_filter
        )
        if subscription is None:
            # Everything up to the terminal event was seen: 204 tells EventSource to stop reconnecting.
            self.set_status(204)
            self.finish()
            return
        self.subscription = subscription
        self.streamed = True
        subscription.reader_alive = self._connection_open
        subscription.on_cut_off = self._cut_off
        open_streams: OpenStreams = self.application.settings["open_streams"]
        open_streams.add(self)
        metrics.SSE_STREAMS_OPEN.inc()
        try:
            await self._send_events(subscription)
            # Wait for the last bytes to leave, so a shutdown that follows cannot cut them off.
            await self.finish()
        except (StreamClosedError, asyncio.CancelledError):
            pass  # the client went away; the run goes on without it
        finally:
            self.engine.unsubscribe(subscription)
            open_streams.discard(self)
            metrics.SSE_STREAMS_OPEN.dec()

    async def _send_events(self, subscription: Subscription) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # let nginx pass events through unbuffered
        stream = self._socket()
        if stream is not None:
            # Each event goes out as it is written: with Nagle's algorithm a write made while the
            # last is unacknowledged waits for the client's delayed ACK, up to 200 ms on Linux.
            stream.set_nodelay(True)
        # Made, sent and let go: nothing of it is kept for the life of the stream.
        connected = make_event(
            None, CONNECTED, subscription.session_id, {"last_event_id": subscription.after_id}
        )
        await self._send(f"retry: {self.config.sse_retry}\n\n".encode() + connected.frame)
        del connected
        self._shed()
        # Live events are written as they are offered, on HTTP/1 connections (whose framing this
        # knows); a stream not written to directly is woken for each batch instead.
        chunked = getattr(self.request.connection, "_chunking_output", None)
        if stream is not None and chunked is not None:
            self._direct, self._chunked = stream, chunked
            subscription.write_through = self._write_through
        while True:
            # What is queued is sent without waiting; a wait is one future, woken by the
            # subscription (events, its close) or by the streams' shared heartbeat timer.
            batch = subscription.take()
            if batch:
                await self._send(b"".join(event.frame for event in batch))
                metrics.EVENTS_DELIVERED.inc(len(batch))
                if batch[-1].terminal:
                    return
            elif subscription.closed:
                if subscription.closed_reason == CloseReason.SHUTDOWN:
                    await self._send(b": the server is shutting down; reconnect later\n\n")
                return
            elif self._heartbeat_due:
                self._heartbeat_due = False
                await self._send(b": heartbeat\n\n")
            else:
                self._waiter = subscription.ready()
                await self._waiter
                self._waiter = None

    def _shed(self) -> None:
        """Let go of what only the answer's start needed: a stream lives for minutes or hours, and
        idle streams by the thousand are mostly this state. The response headers are sent; the
        template namespace Tornado gives every handler is never used by a stream; and the
        connection's write queues are sized for a few entries (listener/long_lived.py)."""
        self._headers = HTTPHeaders()
        self.ui = ObjectDict()
        stream = self._socket()
        if stream is not None:
            slim_connection(stream, getattr(self.request.connection, "context", None))

    def _write_through(self, events: list[Event]) -> bool:
        """Write live events as they are offered (Subscription.write_through). Refused, so that the
        loop above sends them: a terminal event (the log's last; the stream ends after it), and any
        while the socket still holds earlier bytes (a slow reader is timed there)."""
        stream = self._direct
        if stream is None or stream.closed() or stream.writing() or events[-1].terminal:
            return False
        wire, frames = wire_bytes(events, self._chunked)
        send_now(stream, wire)
        self._last_sent = asyncio.get_running_loop().time()
        written_through.add(len(events), frames)
        return True

    def heartbeat_if_silent(self, now: float, interval: float) -> None:
        """Called by the shared heartbeat timer: wake this stream for a heartbeat if it has been
        silent for `interval` s."""
        if self.subscription is not None and now - self._last_sent >= interval:
            self._heartbeat_due = True
            self.subscription.wake()

    async def _send(self, data: bytes) -> None:
        """Write and wait for the client to take it, but not forever: a reader that stalls is cut off."""
        self.write(data)
        self._last_sent = asyncio.get_running_loop().time()
        flushed = self.flush()
        stream = self._socket()
        if stream is not None and not stream.closed() and not stream.writing():
            # The socket took it all at once, as it does for any reader keeping up: nothing to wait
            # for (a timed wait per write per stream was most of what a delivery cost).
            flushed.add_done_callback(_settled)
            metrics.SSE_SENT_BYTES.inc(len(data))
            return
        try:
            await asyncio.wait_for(flushed, timeout=self.config.flush_timeout)
        except TimeoutError:
            metrics.SSE_CUT_OFF.labels("flush_timeout").inc()
            self._cut_off(f"the client took no data for {self.config.flush_timeout:g} s")
            raise StreamClosedError() from None
        metrics.SSE_SENT_BYTES.inc(len(data))

    def _cut_off(self, why: str = "the client fell too far behind") -> None:
        log.warning("stream cut off: %s; it can resume with Last-Event-ID", why)
        stream = self._socket()
        if stream is not None:
            stream.close()  # on_connection_close follows, and the handler winds down

    def on_connection_close(self) -> None:
        # May fire late, or while we wait for events: stop waiting and let `finally` clean up.
        # The base class ends a request whose body was still arriving; without it that request's
        # task would wait for the rest of the body until the process exits.
        super().on_connection_close()
        if self._waiter is not None:
            self._waiter.cancel()
        if self.subscription is not None:
            self.subscription.close()


_wired: tuple[list[Event] | None, bool, bytes, int] = (None, False, b"", 0)


def wire_bytes(events: list[Event], chunked: bool) -> tuple[bytes, int]:
    """The events' frames as written to a stream (one HTTP/1.1 chunk, or bare for HTTP/1.0), and
    the frames' own length. The fan-out hands one list to every stream of the session in turn, so
    the last one is kept: each batch is joined and framed once, however many streams take it."""
    global _wired
    if _wired[0] is not events or _wired[1] != chunked:
        data = b"".join(event.frame for event in events)
        wire = b"%x\r\n%b\r\n" % (len(data), data) if chunked else data
        _wired = (events, chunked, wire, len(data))
    return _wired[2], _wired[3]


def send_now(stream: IOStream, data: bytes) -> None:
    """Write to a stream that has nothing buffered: straight to its socket, and through the stream
    only what the socket did not take (which then waits for the socket to drain). The stream's own
    write costs a future and a buffer per call, per stream, per event."""
    sent = 0
    if type(stream) is IOStream:  # plain TCP; a TLS stream writes through its own machinery
        with contextlib.suppress(OSError):  # a reset: the stream's own write below meets it and closes
            sent = stream.socket.send(data)
    if sent < len(data):
        stream.write(memoryview(data)[sent:])


class DeliveryTally:
    """Events and bytes written through, added to the metrics once per fan-out batch (at the
    loop's next turn) instead of once per stream: an increment takes a lock, about a microsecond,
    and one batch goes to thousands of streams in one go."""

    def __init__(self) -> None:
        self.events = 0
        self.frames = 0
        self._due_on: asyncio.AbstractEventLoop | None = None  # the loop the count is scheduled on

    def add(self, events: int, frames: int) -> None:
        self.events += events
        self.frames += frames
        loop = asyncio.get_running_loop()
        # Scheduled again on another loop: one closed before its turn came would keep the count.
        if self._due_on is not loop:
            self._due_on = loop
            loop.call_soon(self._count)

    def _count(self) -> None:
        metrics.EVENTS_DELIVERED.inc(self.events)
        metrics.SSE_SENT_BYTES.inc(self.frames)
        self.events = self.frames = 0
        self._due_on = None


written_through = DeliveryTally()


def _settled(future: asyncio.Future[None]) -> None:
    """A flush not waited for: its outcome is taken, so a failure is not logged as never retrieved
    (a closed connection is noticed by on_connection_close)."""
    if not future.cancelled():
        future.exception()
