"""How a Session is laid out in a database row, and read back from one."""

from __future__ import annotations

from typing import Any

import ujson

from core.events import dumps
from core.models import Session, SessionResult, SessionStatus, SessionStep, parse_time, rfc3339

Row = tuple[Any, ...]

COLUMNS = (
    "id",
    "topic",
    "status",
    "created_at",
    "updated_at",
    "run_started_ns",
    "result",
    "steps",
    "metadata",
    "checkpoints",
    "owner",
)


def session_to_row(session: Session) -> Row:
    return (
        session.id,
        session.topic,
        session.status.value,
        rfc3339(session.created_at),
        rfc3339(session.updated_at),
        session.run_started_ns,
        dumps(session.result.to_json()) if session.result else None,
        dumps([step.to_json() for step in session.steps]),
        dumps(session.metadata),
        dumps(session.checkpoints),
        session.owner,
    )


def session_from_row(row: Row, last_event_id: int) -> Session:
    values = dict(zip(COLUMNS, row, strict=True))
    created_at, updated_at = parse_time(values["created_at"]), parse_time(values["updated_at"])
    assert created_at is not None and updated_at is not None
    return Session(
        id=values["id"],
        topic=values["topic"],
        status=SessionStatus(values["status"]),
        created_at=created_at,
        updated_at=updated_at,
        result=SessionResult.from_json(ujson.loads(values["result"])) if values["result"] else None,
        steps=[SessionStep.from_json(step) for step in ujson.loads(values["steps"])],
        metadata=ujson.loads(values["metadata"]),
        last_event_id=last_event_id,
        checkpoints=ujson.loads(values["checkpoints"]),
        run_started_ns=values["run_started_ns"],
        owner=values["owner"],
    )
