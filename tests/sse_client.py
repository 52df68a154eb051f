"""A small HTTP/1.1 client over a raw socket whose responses are read as Server-Sent Events.

Raw, so a test controls everything a real client can do: read some events and hang up, stop
reading altogether, send Last-Event-ID, and see the exact bytes of every frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import ujson

from client import sse

DEFAULT_TIMEOUT = 15.0
# Every connection opened, so a fixture can close what a test left open before its loop goes away.
OPEN_CONNECTIONS: list[SSEConnection] = []


class SSEEvent(sse.SSEEvent):
    """One dispatched event, with its data read as the service's JSON event."""

    @property
    def json(self) -> dict[str, Any]:
        return ujson.loads(self.data)

    @property
    def type(self) -> str:
        return self.json["type"]


class SSEConnection:
    """One HTTP request whose response is read as an event stream (or as a plain body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.parser = sse.SSEParser(keep_comments=True)
        self.events: list[SSEEvent] = []
        self._pending: list[SSEEvent] = []
        self._chunked = False
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    async def _read_head(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    async def body(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """The whole body of a response that is not a stream (an error, a 204)."""
        async with asyncio.timeout(timeout):
            if self._chunked:
                parts = []
                while (chunk := await self._next_chunk()) is not None:
                    parts.append(chunk)
                return b"".join(parts)
            length = int(self.headers.get("content-length", "0"))
            return await self.reader.readexactly(length) if length else b""

    async def next_event(self, timeout: float = DEFAULT_TIMEOUT) -> SSEEvent | None:
        """The next event, or None once the server has ended the stream."""
        async with asyncio.timeout(timeout):
            while not self._pending:
                if self._ended:
                    return None
                chunk = await self._next_chunk()
                if chunk is None:
                    self._ended = True
                    continue
                self._feed(chunk)
        event = self._pending.pop(0)
        self.events.append(event)
        return event

    def _feed(self, chunk: bytes) -> None:
        self._pending.extend(SSEEvent(e.data, e.id, e.event) for e in self.parser.feed(chunk))

    async def _next_chunk(self) -> bytes | None:
        try:
            if self._chunked:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    return None
                chunk = await self.reader.readexactly(size)
                await self.reader.readexactly(2)
                return chunk
            chunk = await self.reader.read(65536)
            return chunk or None
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def wait_for_comment(self, text: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Read on (keeping any events for later) until a `:` comment with this text arrives."""
        async with asyncio.timeout(timeout):
            while text not in self.parser.comments:
                chunk = await self._next_chunk()
                if chunk is None:
                    raise AssertionError(f"stream ended before the comment {text!r}")
                self._feed(chunk)

    async def read_all(self, timeout: float = DEFAULT_TIMEOUT) -> list[SSEEvent]:
        """Every event until the server ends the stream, within one overall deadline."""
        async with asyncio.timeout(timeout):
            while await self.next_event(timeout) is not None:
                pass
        return self.events

    async def read_until(self, event_type: str, timeout: float = DEFAULT_TIMEOUT) -> SSEEvent:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_event(timeout)
                if event is None:
                    raise AssertionError(f"stream ended before a {event_type!r} event")
                if event.type == event_type:
                    return event

    def close(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def open_sse(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    receive_buffer: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SSEConnection:
    """Send the request and read the response head; `receive_buffer` shrinks the socket's buffer."""
    async with asyncio.timeout(timeout):
        if receive_buffer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            import socket

            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=receive_buffer)
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if method == "POST":
            lines.append("Content-Length: 0")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        connection = SSEConnection(reader, writer)
        OPEN_CONNECTIONS.append(connection)
        await connection._read_head()
        return connection
