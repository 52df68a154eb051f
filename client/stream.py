"""Follows a session's Server-Sent Events stream across dropped connections, each event once."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from client.api import AuthError, ClientError, error_message, refusal, retry_after
from client.sse import SSEEvent, SSEParser

TERMINAL = frozenset({"final", "error"})
DEFAULT_RETRY_MS = 3000
MAX_DELAY = 30.0
# The server sends a heartbeat every 15 s while idle, so this long without a byte means a dead link.
READ_TIMEOUT = 45.0
CONNECT_TIMEOUT = 10.0


class StreamError(ClientError):
    """The stream could not be followed to its end; the message says why."""


class TryAgain(Exception):
    """This connection failed in a way that another attempt may not; `delay` is the server's wait, if any."""

    def __init__(self, why: str, delay: float | None = None) -> None:
        super().__init__(why)
        self.delay = delay


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
            asked: float | None = None  # the Retry-After of a 429
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
            except TryAgain as exc:
                why, asked = str(exc), exc.delay
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                why = f"connection lost ({type(exc).__name__})"
            failures += 1
            if failures > self.max_attempts:
                raise StreamError(f"gave up after {self.max_attempts} attempts to reconnect: {why}")
            base = (parser.retry if parser.retry is not None else DEFAULT_RETRY_MS) / 1000
            delay = min(base * 2 ** (failures - 1), max(base, MAX_DELAY))
            if asked is not None:
                delay = max(delay, asked)
            self.on_reconnect(failures, delay, why)
            self.sleep(delay)
            self.reconnects += 1

    def _connect(self, parser: SSEParser) -> Generator[SSEEvent, None, None]:
        parser.reset_connection()
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id:
            headers["Last-Event-ID"] = str(self.last_id)
        url = f"{self.base_url}/api/sessions/{self.session_id}/run"
        timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)
        with self.http.get(url, headers=headers, stream=True, timeout=timeout) as response:
            if response.status_code == 503:  # draining or its store is down: worth another try
                raise TryAgain(f"the server is unavailable: {error_message(response)}")
            if response.status_code == 429:  # too many requests: wait as long as it asks, then go on
                raise TryAgain(f"the server is busy: {error_message(response)}", retry_after(response))
            if response.status_code == 401:
                raise refusal(response, self.http) or AuthError(error_message(response))
            if response.status_code == 204:
                raise StreamError("the server says this client already had the session's last event")
            if response.status_code != 200:
                raise StreamError(f"GET {url}: {error_message(response)}")
            for chunk in response.iter_content(chunk_size=None):
                yield from parser.feed(chunk)

    def _accept(self, message: SSEEvent) -> dict[str, Any] | None:
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
