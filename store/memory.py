"""Sessions kept in this process's memory: fast, and gone when the process stops."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence

from store.base import SessionStore, StoredImage
from workflow.events import Event
from workflow.models import Session, SessionStatus


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
        return self._sessions.get(session_id)

    async def save(self, session: Session) -> None:
        # The engine mutates the very object this store holds; saving only has to keep it.
        self._sessions[session.id] = session

    async def delete(self, session_id: str) -> bool:
        self._events.pop(session_id, None)
        self._images.pop(session_id, None)
        return self._sessions.pop(session_id, None) is not None

    async def list(self, limit: int, status: SessionStatus | None = None) -> list[Session]:
        found: list[Session] = []
        for session in reversed(self._sessions.values()):
            if status is None or session.status == status:
                found.append(session)
                if len(found) >= limit:
                    break
        return found

    async def count(self) -> dict[str, int]:
        return dict(Counter(session.status.value for session in self._sessions.values()))

    async def append_events(self, session_id: str, events: Sequence[Event]) -> None:
        log = self._events.get(session_id)
        if log is not None:
            log.extend(events)

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
