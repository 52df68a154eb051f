"""Sessions kept in this process's memory: fast, and gone when the process stops."""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.events import Event
from core.models import Session, SessionStatus
from core.store import FINISHED, UNFINISHED, SessionStore, StoredImage


class MemoryStore(SessionStore):
    kind = "memory"

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}  # insertion order is creation order
        self._events: dict[str, list[Event]] = {}
        self._images: dict[str, dict[str, StoredImage]] = {}

    async def create(self, session: Session) -> None:
        self._sessions[session.id] = session
        self._events[session.id] = []
        self._images[session.id] = {}

    async def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None:
            # As the interface says: the last event id is the log's, whatever state was saved.
            log = self._events.get(session_id)
            session.last_event_id = (log[-1].id or 0) if log else 0
        return session

    async def save(self, session: Session) -> None:
        # The engine mutates the very object this store holds; saving only has to keep it.
        self._sessions[session.id] = session

    async def delete(self, session_id: str) -> bool:
        self._events.pop(session_id, None)
        self._images.pop(session_id, None)
        return self._sessions.pop(session_id, None) is not None

    async def newest(
        self, limit: int, status: SessionStatus | None = None, before: str | None = None
    ) -> list[Session]:
        newest_first = list(reversed(self._sessions.values()))
        if before is not None:
            position = next((i for i, s in enumerate(newest_first) if s.id == before), len(newest_first))
            newest_first = newest_first[position + 1 :]
        return [s for s in newest_first if status is None or s.status == status][:limit]

    async def unfinished(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.status in UNFINISHED]

    async def count(self) -> dict[str, int]:
        return dict(Counter(session.status.value for session in self._sessions.values()))

    def append_events(
        self, session_id: str, events: Sequence[Event], session: Session | None = None
    ) -> asyncio.Future[None]:
        if session is not None:
            self._sessions[session.id] = session
        log = self._events.get(session_id)
        if log is not None:
            log.extend(events)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def events_after(self, session_id: str, after_id: int) -> list[Event]:
        log = self._events.get(session_id, [])
        # Ids are 1, 2, 3, ... in order, so the position can be found without a scan.
        start = bisect.bisect_right(log, after_id, key=lambda event: event.id or 0)
        return log[start:]

    async def put_image(self, session_id: str, name: str, image: StoredImage) -> None:
        images = self._images.get(session_id)
        if images is not None:
            images[name] = image

    async def get_image(self, session_id: str, name: str) -> StoredImage | None:
        return self._images.get(session_id, {}).get(name)

    async def prune(self, finished_before: datetime, keep_at_most: int) -> list[str]:
        finished = [s for s in self._sessions.values() if s.status in FINISHED]  # oldest first
        doomed = [s.id for s in finished if s.updated_at < finished_before]
        excess = len(self._sessions) - len(doomed) - keep_at_most
        if excess > 0:
            doomed += [s.id for s in finished if s.id not in doomed][:excess]
        for session_id in doomed:
            await self.delete(session_id)
        return doomed

    async def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "writable": True}
