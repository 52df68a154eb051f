"""Which events of a session become webhook messages, for which URLs, and what each message says.

The messages follow the Standard Webhooks payload shape: `{"type", "timestamp", "data"}`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ujson

from core import events as ev
from core.events import Event
from core.models import Session, rfc3339, utcnow
from core.store import Delivery

SESSION_EVENTS = ("session.completed", "session.failed", "session.cancelled")
EVENT_TYPES = (*SESSION_EVENTS, "step.completed", "step.failed")  # step events only when asked for
RESULT_URL = "/api/sessions/{session_id}/result"


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    events: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "events": list(self.events)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WebhookTarget:
        return cls(data["url"], tuple(data["events"]))


def message_type(event: Event) -> str | None:
    """The webhook type an event of the log becomes, if any."""
    if event.type == ev.FINAL:
        return "session.completed"
    if event.type == ev.ERROR:
        status = event.json().get("data", {}).get("status", "failed")
        return f"session.{status}"
    if event.type == ev.STEP_COMPLETE:
        return "step.completed"
    if event.type == ev.STEP_ERROR:
        return "step.failed"
    return None


@dataclass(frozen=True)
class WebhookPolicy:
    """The service-wide target (if any), and where a session's result is found (an absolute base
    URL when `public_url` is set, else a path on this service)."""

    service_target: WebhookTarget | None
    public_url: str

    def targets(self, session: Session) -> list[WebhookTarget]:
        own = [WebhookTarget.from_json(t) for t in session.metadata.get("webhooks", [])]
        return [*own, self.service_target] if self.service_target else own

    def outbox(self, event: Event, session: Session) -> Sequence[Delivery]:
        """The deliveries `event` causes, to be committed with it."""
        kind = message_type(event)
        if kind is None:
            return ()
        targets = [t for t in self.targets(session) if kind in t.events]
        if not targets:
            return ()
        payload = ujson.dumps(
            {"type": kind, "timestamp": rfc3339(utcnow()), "data": self._data(kind, event, session)},
            ensure_ascii=False,
            escape_forward_slashes=False,
        ).encode()
        now = time.time()
        return [
            Delivery(
                id=f"msg_{uuid.uuid4().hex}",
                session_id=session.id,
                event_type=kind,
                url=target.url,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
            )
            for target in targets
        ]

    def _data(self, kind: str, event: Event, session: Session) -> dict[str, Any]:
        data = event.json().get("data", {})
        body: dict[str, Any] = {
            "session_id": session.id,
            "topic": session.topic,
            "status": session.status.value,
            "event_id": event.id,
        }
        if kind.startswith("session."):
            body["result_url"] = self.public_url.rstrip("/") + RESULT_URL.format(session_id=session.id)
        if kind == "session.completed":
            body["summary"] = data["result"]["summary"]
        elif kind.startswith("step."):
            body["step_name"] = data["step_name"]
            body["error" if kind == "step.failed" else "output"] = data.get("error", data.get("output", ""))
        elif "error" in data:
            body["error"] = data["error"]
        return body
