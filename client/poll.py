"""Follows a session by long polling, for networks where a Server-Sent Events stream does not get through.

The session is started with POST /api/sessions/{id}/start (a 409 means it already was), then
GET /api/sessions/{id}/events?after=N&wait=S is asked again and again. Each answer is JSON:
`{"events": [...], "done": bool, "status": "...", "next_after": N}`, the events after id N (the same
payloads the stream sends, each with its `id`), held up to S seconds while there are none (an empty
list then), and `done` once the terminal event (`final` or `error`) has been handed out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from client.api import AuthError, ClientError, error_message, refusal, retry_after
from client.stream import CONNECT_TIMEOUT, MAX_DELAY, TERMINAL, StreamError, TryAgain

T = TypeVar("T")
# How long the server may hold one poll open, and how long past that the client waits for its answer.
POLL_WAIT = 25.0
POLL_GRACE = 15.0
FIRST_DELAY = 1.0  # the first wait before trying again, doubled for each failure in a row


@dataclass
class SessionPoller:
    """A session's events by long polling, each event once and in order, like SessionStream's.

    A failed request (no connection, a timeout, a 503, a 429) is tried again after FIRST_DELAY s,
    doubled for each failure in a row (capped at MAX_DELAY s, at least a 429's Retry-After); after
    `max_attempts` in a row it gives up with a StreamError.
    """

    http: requests.Session
    base_url: str
    session_id: str
    max_attempts: int = 5
    on_reconnect: Callable[[int, float, str], None] = lambda attempt, delay, why: None
    sleep: Callable[[float], None] = time.sleep
    wait: float = POLL_WAIT
    last_id: int = 0
    reconnects: int = 0

    def events(self) -> Iterator[dict[str, Any]]:
        self._retrying(self._start)
        while True:
            answer = self._retrying(self._poll)
            for event in answer["events"]:
                event_id = event.get("id") if isinstance(event, dict) else None
                if not isinstance(event_id, int) or event_id <= self.last_id:
                    continue  # one already handed on (or one without an id): not again
                self.last_id = event_id
                yield event
                if event.get("type") in TERMINAL:
                    return
            if answer.get("done"):
                raise StreamError(
                    f"the service says session {self.session_id} is over ({answer.get('status')}) "
                    f"but sent no final or error event after event {self.last_id}"
                )

    def _retrying(self, call: Callable[[], T]) -> T:
        failures = 0
        while True:
            asked: float | None = None
            try:
                return call()
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
                raise StreamError(f"gave up after {self.max_attempts} attempts to poll again: {why}")
            delay = min(FIRST_DELAY * 2 ** (failures - 1), MAX_DELAY)
            if asked is not None:
                delay = max(delay, asked)
            self.on_reconnect(failures, delay, why)
            self.sleep(delay)
            self.reconnects += 1

    def _start(self) -> None:
        path = f"/api/sessions/{self.session_id}/start"
        response = self.http.post(self.base_url + path, timeout=(CONNECT_TIMEOUT, 30.0))
        if response.status_code in (200, 202, 409):  # 409: started already (by someone, or earlier)
            return
        self._refused(response, f"POST {path}")

    def _poll(self) -> dict[str, Any]:
        path = f"/api/sessions/{self.session_id}/events"
        params: dict[str, str | int] = {"after": self.last_id, "wait": f"{self.wait:g}"}
        timeout = (CONNECT_TIMEOUT, self.wait + POLL_GRACE)
        response = self.http.get(self.base_url + path, params=params, timeout=timeout)
        if response.status_code == 404:
            raise StreamError(
                f"GET {path}: {error_message(response)}: the session is gone, or this service has no "
                "long-polling endpoint (--transport=sse works with every version)"
            )
        if response.status_code != 200:
            self._refused(response, f"GET {path}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("events"), list):
            raise StreamError(f"GET {path}: the answer is not the JSON of a list of events")
        return answer

    def _refused(self, response: requests.Response, request: str) -> None:
        if response.status_code == 503:  # draining, its queue is full or its store is down
            raise TryAgain(f"the server is unavailable: {error_message(response)}", retry_after(response))
        if response.status_code == 429:
            raise TryAgain(f"the server is busy: {error_message(response)}", retry_after(response))
        if response.status_code == 401:
            raise refusal(response, self.http) or AuthError(error_message(response))
        raise ClientError(f"{request}: {error_message(response)}")
