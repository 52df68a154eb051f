"""Session, SessionStep and SessionResult as the contract shapes them, and their JSON forms."""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

STEP_NAMES = ("analyze-topic", "generate-outline", "create-content", "generate-images", "finalize-lesson")


class SessionStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # started, waiting for one of max_running run slots
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the process stopped mid-run

    @property
    def finished(self) -> bool:
        return self in (SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.CANCELLED)


class StopReason(StrEnum):
    """Why a run was stopped before its pipeline ended; it decides what is recorded."""

    CANCELLED = "cancelled"  # a client asked: recorded, with a terminal `error` event
    INTERRUPTED = "interrupted"  # the process is stopping: recorded, no terminal event, resumed later
    DELETED = "deleted"  # the session is being deleted: nothing is recorded
    MOVED = "moved"  # this instance lost the run's lease, another runs it now: nothing is recorded


class StepStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # started, waiting for one of max_running run slots
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=4096)
def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, milliseconds kept: 2023-10-14T23:58:28.123Z.

    Remembered for the latest few thousand moments: a session's times (its steps' starts and ends)
    are written out again with every save of it, and writing one out costs ten times the look-up.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_second: tuple[int, str] = (-1, "")  # the last whole second written out by now_rfc3339


def now_rfc3339() -> str:
    """rfc3339(utcnow()), for every event: the date and time are written out once per second."""
    global _second
    now = time.time()
    whole = int(now)
    second = _second  # one read: another thread may be replacing it
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{int((now - whole) * 1000):03d}Z"


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class SessionStep:
    id: str
    name: str
    status: StepStatus = StepStatus.PENDING
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ns: int | None = None
    output: str = ""
    error: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "name": self.name, "status": self.status.value}
        if self.started_at:
            data["started_at"] = rfc3339(self.started_at)
        if self.completed_at:
            data["completed_at"] = rfc3339(self.completed_at)
        if self.duration_ns is not None:
            data["duration"] = self.duration_ns
        for key in ("output", "error", "metadata"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionStep:
        return cls(
            id=data["id"],
            name=data["name"],
            status=StepStatus(data["status"]),
            started_at=parse_time(data.get("started_at")),
            completed_at=parse_time(data.get("completed_at")),
            duration_ns=data.get("duration"),
            output=data.get("output", ""),
            error=data.get("error", ""),
            metadata=data.get("metadata", {}),
        )


@dataclass
class SessionResult:
    lesson: str
    images: dict[str, str]
    summary: str
    duration_ns: int
    completed_at: datetime
    partial: bool = False  # an optional step failed; the lesson is whole but lacks its part
    metadata: dict[str, Any] = field(default_factory=dict)  # token usage, when a model was used

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "lesson": self.lesson,
            "images": self.images,
            "summary": self.summary,
            "duration": self.duration_ns,
            "completed_at": rfc3339(self.completed_at),
        }
        # Like the contract's omitempty fields: absent unless there is something to say.
        if self.partial:
            data["partial"] = True
        if self.metadata:
            data["metadata"] = self.metadata
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionResult:
        completed_at = parse_time(data["completed_at"])
        assert completed_at is not None
        return cls(
            data["lesson"],
            data["images"],
            data["summary"],
            data["duration"],
            completed_at,
            data.get("partial", False),
            data.get("metadata", {}),
        )


@dataclass
class Session:
    id: str
    topic: str
    status: SessionStatus = SessionStatus.PENDING
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    result: SessionResult | None = None
    steps: list[SessionStep] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # Not part of the JSON form: the id of the last event in the session's log, what each
    # completed step handed on to the next (its checkpoint), and when its run first started
    # (wall clock, ns), so a run resumed after a restart still reports its whole duration.
    last_event_id: int = 0
    # Who created it: an API key's name, or "anon:<address>" when the service has no keys. Never
    # shown; it decides who may see the session and whose pending cap it counts against.
    owner: str = ""
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_started_ns: int = 0

    @classmethod
    def new(cls, topic: str, metadata: dict[str, Any] | None = None, owner: str = "") -> Session:
        steps = [SessionStep(id=f"step-{i}", name=name) for i, name in enumerate(STEP_NAMES, start=1)]
        return cls(id=str(uuid.uuid4()), topic=topic, steps=steps, metadata=dict(metadata or {}), owner=owner)

    def touch(self) -> None:
        self.updated_at = utcnow()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "topic": self.topic,
            "status": self.status.value,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }
        if self.result:
            data["result"] = self.result.to_json()
        if self.steps:
            data["steps"] = [step.to_json() for step in self.steps]
        if self.metadata:
            data["metadata"] = self.metadata
        return data
