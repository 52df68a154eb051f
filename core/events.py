"""SSE events: the types, and each event encoded once into the payload and frame every reader gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ujson

from core.models import now_rfc3339

CONNECTED = "connected"
STEP_START = "step-start"
STEP_DELTA = "step-delta"
STEP_COMPLETE = "step-complete"
STEP_ERROR = "step-error"
STEP_RETRY = "step-retry"
QUEUED = "queued"  # the session waits for a run slot; `position` 1 is next
FINAL = "final"
ERROR = "error"
TERMINAL_TYPES = frozenset({FINAL, ERROR})


def dumps(value: Any) -> str:
    """JSON the way every body and frame of the service is written."""
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)


def sse_frame(event_id: int | None, payload: bytes) -> bytes:
    """The one place the SSE frame is written. ujson never emits a raw newline: one data line."""
    if event_id is None:
        return b"data: %s\n\n" % payload
    return b"id: %d\ndata: %s\n\n" % (event_id, payload)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a session's log as it travels: encoded once, into the frame every reader gets.

    `id` is None only for `connected`, which belongs to one connection. The JSON payload is a view
    into the frame, not a second copy: a store keeps it with `type`, and an event read back is
    rebuilt with `stored`, byte for byte, without decoding.
    """

    id: int | None
    type: str
    session_id: str
    frame: bytes

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    @property
    def payload(self) -> memoryview:
        start = self.frame.index(b"data: ") + 6
        return memoryview(self.frame)[start:-2]

    def json(self) -> dict[str, Any]:
        """The payload decoded: for readers that need a field, never on the path to a socket."""
        decoded: dict[str, Any] = ujson.loads(bytes(self.payload))
        return decoded

    @classmethod
    def stored(cls, event_id: int, event_type: str, session_id: str, payload: bytes) -> Event:
        return cls(event_id, event_type, session_id, sse_frame(event_id, payload))


def make_event(
    event_id: int | None,
    event_type: str,
    session_id: str,
    data: dict[str, Any],
    step_id: str | None = None,
    timestamp: str | None = None,
) -> Event:
    """Build an event, encoding its payload and frame once. Key order follows the contract's examples."""
    body: dict[str, Any] = {"type": event_type, "session_id": session_id}
    if step_id:
        body["step_id"] = step_id
    body["data"] = data
    body["timestamp"] = timestamp or now_rfc3339()
    return Event(event_id, event_type, session_id, sse_frame(event_id, dumps(body).encode()))
