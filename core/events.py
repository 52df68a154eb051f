"""SSE events: the types, and each event encoded once into the frame every subscriber is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ujson

from core.models import rfc3339, utcnow

CONNECTED = "connected"
STEP_START = "step-start"
STEP_DELTA = "step-delta"
STEP_COMPLETE = "step-complete"
STEP_ERROR = "step-error"
STEP_RETRY = "step-retry"
FINAL = "final"
ERROR = "error"
TERMINAL_TYPES = frozenset({FINAL, ERROR})


def dumps(value: Any) -> str:
    """JSON the way every body and frame of the service is written."""
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)


@dataclass(frozen=True, slots=True)
class Event:
    """One event as clients see it. `id` is None only for `connected`, which belongs to one connection."""

    id: int | None
    type: str
    session_id: str
    data: dict[str, Any]
    timestamp: str
    step_id: str | None = None
    frame: bytes = b""

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def to_json(self) -> dict[str, Any]:
        # Key order follows the contract's examples.
        payload: dict[str, Any] = {"type": self.type, "session_id": self.session_id}
        if self.step_id:
            payload["step_id"] = self.step_id
        payload["data"] = self.data
        payload["timestamp"] = self.timestamp
        return payload


def frame_payload(event: Event) -> bytes:
    """The JSON text of a logged event's frame: what a store keeps to rebuild the frame exactly."""
    return event.frame[event.frame.index(b"data: ") + 6 : -2]


def event_from_payload(event_id: int, payload: bytes) -> Event:
    """Rebuild a stored event; its frame is byte for byte the one first sent."""
    body = ujson.loads(payload)
    event = Event(
        event_id, body["type"], body["session_id"], body["data"], body["timestamp"], body.get("step_id")
    )
    object.__setattr__(event, "frame", b"id: %d\ndata: %s\n\n" % (event_id, payload))
    return event


def make_event(
    event_id: int | None,
    event_type: str,
    session_id: str,
    data: dict[str, Any],
    step_id: str | None = None,
    timestamp: str | None = None,
) -> Event:
    """Build an event and encode its SSE frame once; ujson never emits a raw newline, so one data line."""
    event = Event(event_id, event_type, session_id, data, timestamp or rfc3339(utcnow()), step_id)
    head = f"id: {event_id}\n" if event_id is not None else ""
    frame = f"{head}data: {dumps(event.to_json())}\n\n".encode()
    object.__setattr__(event, "frame", frame)
    return event
