"""Sessions kept in this process's memory: fast, and gone when the process stops."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.errors import PendingLimitReached, SessionNotFound
from core.events import Event
from core.models import Session, SessionStatus
from core.store import FINISHED, UNFINISHED, Delivery, SessionStore, StoredImage
from store.records import Row, session_from_row, session_to_row


class MemoryStore(SessionStore):
    """Keeps each session as the row a database would, so a reader gets its own copy and nobody
    changes stored state without a write, exactly as with SQLite."""

    kind = "memory"

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}  # insertion order is creation order
        self._status: dict[str, SessionStatus] = {}
        self._updated: dict[str, datetime] = {}
        self._created: dict[str, datetime] = {}
        self._owner: dict[str, str] = {}
        self._counts: Counter[tuple[str, str]] = Counter()  # sessions by (owner, status), kept up to date
        self._events: dict[str, list[Event]] = {}
        self._images: dict[str, dict[str, StoredImage]] = {}
        self._deliveries: dict[str, Delivery] = {}  # by id, in the order they were added

    def _keep(self, session: Session) -> None:
        if session.id in self._rows:
            self._counts[self._owner[session.id], self._status[session.id].value] -= 1
        self._counts[session.owner, session.status.value] += 1
        self._rows[session.id] = session_to_row(session)
        self._status[session.id] = session.status
        self._updated[session.id] = session.updated_at
        self._created[session.id] = session.created_at
        self._owner[session.id] = session.owner

    def _session(self, session_id: str) -> Session:
        log = self._events[session_id]
        return session_from_row(self._rows[session_id], (log[-1].id or 0) if log else 0)

    def _require(self, session_id: str) -> None:
        if session_id not in self._rows:
            raise SessionNotFound(session_id)

    async def create(self, session: Session, max_pending: int | None = None) -> None:
        if session.id in self._rows:
            raise ValueError(f"session {session.id} exists already")
        pending = self._counts[session.owner, SessionStatus.PENDING.value]
        if max_pending is not None and pending >= max_pending:
            raise PendingLimitReached(pending)
        self._keep(session)
        self._events[session.id] = []
        self._images[session.id] = {}

    async def get(self, session_id: str) -> Session | None:
        return self._session(session_id) if session_id in self._rows else None

    async def update(self, session: Session) -> None:
        self._require(session.id)
        self._keep(session)

    async def delete(self, session_id: str) -> bool:
        for delivery in [d for d in self._deliveries.values() if d.session_id == session_id]:
            del self._deliveries[delivery.id]
        self._events.pop(session_id, None)
        self._images.pop(session_id, None)
        if session_id in self._rows:
            self._counts[self._owner[session_id], self._status[session_id].value] -= 1
        self._status.pop(session_id, None)
        self._updated.pop(session_id, None)
        self._created.pop(session_id, None)
        self._owner.pop(session_id, None)
        return self._rows.pop(session_id, None) is not None

    async def newest(
        self,
        limit: int,
        status: SessionStatus | None = None,
        before: str | None = None,
        owner: str | None = None,
    ) -> list[Session]:
        newest_first = list(reversed(self._rows))
        if before is not None:
            position = newest_first.index(before) if before in self._rows else len(newest_first)
            newest_first = newest_first[position + 1 :]
        wanted = [
            i
            for i in newest_first
            if (status is None or self._status[i] == status) and (owner is None or self._owner[i] == owner)
        ][:limit]
        return [self._session(session_id) for session_id in wanted]

    async def unfinished(self) -> list[Session]:
        return [self._session(i) for i, status in self._status.items() if status in UNFINISHED]

    async def count(self, owner: str | None = None) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for (of, status), n in self._counts.items():
            if n > 0 and (owner is None or of == owner):
                counts[status] += n
        return dict(counts)

    def append_events(
        self,
        session_id: str,
        events: Sequence[Event],
        session: Session | None = None,
        outbox: Sequence[Delivery] = (),
    ) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if session_id not in self._rows:
            done.set_exception(SessionNotFound(session_id))
            return done
        if session is not None:
            self._keep(session)
        self._events[session_id].extend(events)
        for delivery in outbox:
            self._deliveries[delivery.id] = dataclasses.replace(delivery)
        done.set_result(None)
        return done

    async def events_after(self, session_id: str, after_id: int) -> list[Event]:
        log = self._events.get(session_id, [])
        # Ids are 1, 2, 3, ... in order, so the position can be found without a scan.
        start = bisect.bisect_right(log, after_id, key=lambda event: event.id or 0)
        return log[start:]

    async def put_image(self, session_id: str, name: str, image: StoredImage) -> None:
        self._require(session_id)
        self._images[session_id][name] = image

    async def get_image(self, session_id: str, name: str) -> StoredImage | None:
        return self._images.get(session_id, {}).get(name)

    async def prune(
        self, finished_before: datetime, keep_at_most: int, pending_before: datetime | None = None
    ) -> list[str]:
        finished = [i for i, status in self._status.items() if status in FINISHED]  # oldest first
        pending = [i for i, status in self._status.items() if status == SessionStatus.PENDING]
        doomed = [i for i in finished if self._updated[i] < finished_before]
        if pending_before is not None:
            doomed += [i for i in pending if self._created[i] < pending_before]
        excess = len(self._rows) - len(doomed) - keep_at_most
        if excess > 0:
            candidates = finished + (pending if pending_before is not None else [])
            doomed += [i for i in candidates if i not in set(doomed)][:excess]
        for session_id in doomed:
            await self.delete(session_id)
        return doomed

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        due = [d for d in self._deliveries.values() if d.status == "pending" and d.next_attempt_at <= now]
        return [dataclasses.replace(d) for d in sorted(due, key=lambda d: d.next_attempt_at)[:limit]]

    async def next_delivery_at(self) -> float | None:
        pending = [d.next_attempt_at for d in self._deliveries.values() if d.status == "pending"]
        return min(pending, default=None)

    async def record_attempt(self, delivery: Delivery) -> None:
        if delivery.id in self._deliveries:
            self._deliveries[delivery.id] = dataclasses.replace(delivery)

    async def deliveries(self, session_id: str) -> list[Delivery]:
        return [dataclasses.replace(d) for d in self._deliveries.values() if d.session_id == session_id]

    async def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "writable": True}
