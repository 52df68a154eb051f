"""Store doubles for tests: a real store whose writes can be made to fail on demand, like a full disk."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.errors import StoreUnavailable
from core.events import Event
from core.models import Session, SessionStatus
from core.store import Delivery, SessionStore, StoredImage

FULL = "cannot write to the database: database or disk is full"


HeldAppend = tuple[str, list[Event], Session | None, Sequence[Delivery], asyncio.Future[None]]


class BreakableStore(SessionStore):
    """Passes everything to a real store; while `broken`, every write fails as a full disk would.
    While `held`, appended events wait to be committed until `release()`, as behind a slow disk;
    like the SQLite writer, a held write is made even if its caller stopped waiting for it."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.broken = False
        self.held = False
        self.waiting: list[HeldAppend] = []

    def _check(self) -> None:
        if self.broken:
            raise StoreUnavailable(FULL)

    async def create(self, session: Session, max_pending: int | None = None) -> None:
        self._check()
        await self.inner.create(session, max_pending)

    async def get(self, session_id: str) -> Session | None:
        return await self.inner.get(session_id)

    async def update(self, session: Session) -> None:
        self._check()
        await self.inner.update(session)

    async def delete(self, session_id: str) -> bool:
        self._check()
        return await self.inner.delete(session_id)

    async def newest(
        self,
        limit: int,
        status: SessionStatus | None = None,
        before: str | None = None,
        owner: str | None = None,
    ) -> list[Session]:
        return await self.inner.newest(limit, status, before, owner)

    async def unfinished(self) -> list[Session]:
        return await self.inner.unfinished()

    async def count(self, owner: str | None = None) -> dict[str, int]:
        return await self.inner.count(owner)

    def append_events(
        self,
        session_id: str,
        events: Sequence[Event],
        session: Session | None = None,
        outbox: Sequence[Delivery] = (),
    ) -> asyncio.Future[None]:
        if self.broken:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(StoreUnavailable(FULL))
            return failed
        if self.held:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiting.append((session_id, list(events), session, outbox, future))
            return future
        return self.inner.append_events(session_id, events, session, outbox)

    async def release(self) -> None:
        """Commit what waits, in order, and whatever comes next at once."""
        self.held = False
        while self.waiting:
            session_id, events, session, outbox, future = self.waiting.pop(0)
            try:
                await self.inner.append_events(session_id, events, session, outbox)
            except Exception as exc:  # handed to the caller, as a store would
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(None)

    async def events_after(self, session_id: str, after_id: int) -> list[Event]:
        return await self.inner.events_after(session_id, after_id)

    async def put_image(self, session_id: str, name: str, image: StoredImage) -> None:
        self._check()
        await self.inner.put_image(session_id, name, image)

    async def get_image(self, session_id: str, name: str) -> StoredImage | None:
        return await self.inner.get_image(session_id, name)

    async def prune(
        self, finished_before: datetime, keep_at_most: int, pending_before: datetime | None = None
    ) -> list[str]:
        self._check()
        return await self.inner.prune(finished_before, keep_at_most, pending_before)

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        self._check()
        return await self.inner.due_deliveries(now, limit)

    async def next_delivery_at(self) -> float | None:
        return await self.inner.next_delivery_at()

    async def record_attempt(self, delivery: Delivery) -> None:
        self._check()
        await self.inner.record_attempt(delivery)

    async def deliveries(self, session_id: str) -> list[Delivery]:
        return await self.inner.deliveries(session_id)

    async def describe(self) -> dict[str, Any]:
        return await self.inner.describe()

    async def close(self) -> None:
        await self.inner.close()
