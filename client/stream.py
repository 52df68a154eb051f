"""Reads a session's Server-Sent Events stream and follows it across dropped connections.

The parser follows the HTML standard's event stream rules: lines end in CR, LF or CRLF; `data:`
lines are joined with newlines; `id:` and `retry:` are remembered; `:` lines are comments; an
event is dispatched at a blank line, and a half-received one is dropped when the connection ends.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from client.api import ClientError, error_message

TERMINAL = frozenset({"final", "error"})
DEFAULT_RETRY_MS = 3000
MAX_DELAY = 30.0
# The server sends a heartbeat every 15 s while idle, so this long without a byte means a dead link.
READ_TIMEOUT = 45.0
CONNECT_TIMEOUT = 10.0


class StreamError(ClientError):
    """The stream could not be followed to its end; the message says why."""


class _TryAgain(Exception):
    """This connection failed in a way that another attempt may not."""


@dataclass(frozen=True)
class SSEMessage:
    """One dispatched event; `id` is the id field it carried itself, if any."""

    data: str
    id: str | None = None
    event: str = "message"


@dataclass
class SSEParser:
    """Fed text as it arrives, returns the events completed by it."""

    retry_ms: int | None = None
    last_id: str | None = None  # the standard's "last event ID", which a reconnect sends
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _own_id: str | None = None
    _started: bool = False
    _after_cr: bool = False

    def feed(self, text: str) -> list[SSEMessage]:
        if not self._started and text:
            text, self._started = text.removeprefix("\ufeff"), True
        if self._after_cr and text:
            # The last piece ended in CR: a LF opening this one is the rest of that CRLF.
            text, self._after_cr = text.removeprefix("\n"), False
        self._buffer += text
        messages = []
        while (cut := _line_end(self._buffer)) >= 0:
            line, rest = self._buffer[:cut], self._buffer[cut + 1 :]
            if self._buffer[cut] == "\r":
                if rest.startswith("\n"):
                    rest = rest[1:]
                elif not rest:
                    self._after_cr = True
            self._buffer = rest
            message = self._line(line)
            if message is not None:
                messages.append(message)
        return messages

    def _line(self, line: str) -> SSEMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = self._own_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEMessage | None:
        data, event, own_id = self._data, self._event, self._own_id
        self._data, self._event, self._own_id = [], "", None
        if not data:
            return None
        return SSEMessage("\n".join(data), own_id, event or "message")

    def reset_connection(self) -> None:
        """Drop a half-received event (as the standard does) but keep the last id and the retry hint."""
        self._buffer, self._data, self._event, self._own_id = "", [], "", None
        self._started = self._after_cr = False


def _line_end(text: str) -> int:
    """Where the first line of `text` ends (at a CR or a LF), or -1 if it has not ended yet."""
    ends = [i for i in (text.find("\r"), text.find("\n")) if i >= 0]
    return min(ends, default=-1)


@dataclass
class SessionStream:
    """A session's events from GET /run, resumed with Last-Event-ID each time the connection drops.

    Each event is yielded once, in order, with its `id` added. A reconnect waits the server's
    `retry:` hint, doubled for each failed attempt in a row (capped at MAX_DELAY s); after
    `max_attempts` in a row without a new event it gives up with a StreamError.
    """

    http: requests.Session
    base_url: str
    session_id: str
    max_attempts: int = 5
    on_reconnect: Callable[[int, float, str], None] = lambda attempt, delay, why: None
    sleep: Callable[[float], None] = time.sleep
    last_id: int = 0
    reconnects: int = 0

    def events(self) -> Iterator[dict[str, Any]]:
        parser = SSEParser()
        failures = 0
        while True:
            try:
                with contextlib.closing(self._connect(parser)) as messages:
                    for message in messages:
                        event = self._accept(message)
                        if event is None:
                            continue
                        if "id" in event:
                            failures = 0  # it got somewhere: the next drop starts a new count
                        yield event
                        if event["type"] in TERMINAL:
                            return
                why = "the server ended the stream before the session finished"
            except _TryAgain as exc:
                why = str(exc)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                why = f"connection lost ({type(exc).__name__})"
            failures += 1
            if failures > self.max_attempts:
                raise StreamError(f"gave up after {self.max_attempts} attempts to reconnect: {why}")
            base = (parser.retry_ms if parser.retry_ms is not None else DEFAULT_RETRY_MS) / 1000
            delay = min(base * 2 ** (failures - 1), max(base, MAX_DELAY))
            self.on_reconnect(failures, delay, why)
            self.sleep(delay)
            self.reconnects += 1

    def _connect(self, parser: SSEParser) -> Generator[SSEMessage, None, None]:
        parser.reset_connection()
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id:
            headers["Last-Event-ID"] = str(self.last_id)
        url = f"{self.base_url}/api/sessions/{self.session_id}/run"
        timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)
        with self.http.get(url, headers=headers, stream=True, timeout=timeout) as response:
            if response.status_code == 503:  # draining or its store is down: worth another try
                raise _TryAgain(f"the server is unavailable: {error_message(response)}")
            if response.status_code == 204:
                raise StreamError("the server says this client already had the session's last event")
            if response.status_code != 200:
                raise StreamError(f"GET {url}: {error_message(response)}")
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            for chunk in response.iter_content(chunk_size=None):
                yield from parser.feed(decoder.decode(chunk))

    def _accept(self, message: SSEMessage) -> dict[str, Any] | None:
        """The event to hand on, or None for one already handed on before a reconnect."""
        try:
            event = json.loads(message.data)
        except ValueError:
            raise StreamError(f"the server sent an event that is not JSON: {message.data[:80]!r}") from None
        if message.id is not None and message.id.isdigit():
            event_id = int(message.id)
            if event_id <= self.last_id:
                return None
            self.last_id = event["id"] = event_id
        elif event.get("type") != "connected":
            return None  # every event but `connected` carries an id; one without is not for us
        return event
