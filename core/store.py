"""The one interface every session store implements, so the engine never knows which it has; and the
webhook deliveries it keeps beside the sessions (the outbox)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.events import Event
from core.models import Session, SessionStatus

FINISHED = (SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.CANCELLED)
UNFINISHED = (SessionStatus.QUEUED, SessionStatus.RUNNING, SessionStatus.INTERRUPTED)


@dataclass(frozen=True)
class StoredImage:
    content_type: str
    data: bytes


@dataclass
class Delivery:
    """One webhook message to one URL, kept until it is delivered or given up on.

    `id` is the message's `webhook-id`: the same on every attempt, so a receiver keeps each once.
    """

    id: str
    session_id: str
    event_type: str  # "session.completed", "step.failed", ...
    url: str
    payload: bytes  # the JSON body, exactly as it is signed and sent
    created_at: float  # seconds since the epoch
    next_attempt_at: float
    attempts: int = 0
    status: str = "pending"  # pending, delivered, gone (the receiver answered 410), failed (gave up)
    last_error: str = ""
    delivered_at: float | None = field(default=None)


@dataclass(frozen=True)
class Admission:
    """What a shared store answered a start under the fleet's max_running.

    `verdict`: "run" (its run lease is now this instance's), "queued" (it joined the fleet's queue at
    `position`; the caller records it queued), "full" (the queue holds max_queued already), "started"
    (it is not pending any more), "taken" (another instance holds its lease). `running` and `queued`
    are the fleet's counts as the store saw them.
    """

    verdict: str
    position: int
    running: int
    queued: int


@dataclass(frozen=True)
class FleetQueue:
    """The fleet's runs and its queue, as a shared store sees them now."""

    running: int
    waiting: list[str]  # session ids, the next to run first


class SessionStore(ABC):
    """Sessions, their append-only event logs and their images.

    Every method is a coroutine so that an implementation backed by a database does its work off
    the IOLoop; each write has been committed by the time its coroutine returns. A failure to
    read or write raises StoreUnavailable.

    Only `create` makes a session. Every later write (`update`, `append_events`, `put_image`)
    raises SessionNotFound once the session has been deleted, so nothing in flight can bring a
    deleted session back; deleting a session deletes its events and images with it.
    """

    kind: str = "abstract"
    # Whether other instances share this store: then a session may run elsewhere, and one that is
    # running but not here is still live (its stream waits for what the other instance appends).
    shared: bool = False

    @abstractmethod
    async def create(self, session: Session, max_pending: int | None = None) -> None:
        """Store a new session; its id must not be taken. With `max_pending`, refuse it
        (PendingLimitReached) if its owner already has that many pending sessions: checked and
        stored in one step, so creates made at once cannot pass the limit together."""

    @abstractmethod
    async def get(self, session_id: str) -> Session | None:
        """The session as last saved, with `last_event_id` taken from its event log."""

    @abstractmethod
    async def update(self, session: Session) -> None:
        """Replace the stored session's state; SessionNotFound if it is gone."""

    @abstractmethod
    async def delete(self, session_id: str) -> bool:
        """Remove the session with its events and images; False if there was none."""

    @abstractmethod
    async def newest(
        self,
        limit: int,
        status: SessionStatus | None = None,
        before: str | None = None,
        owner: str | None = None,
    ) -> list[Session]:
        """Newest first; `before` is the id of a session, and only older ones are listed; `owner`
        keeps only the sessions it created."""

    @abstractmethod
    async def unfinished(self) -> list[Session]:
        """Sessions queued, or a stop left running or interrupted, oldest first."""

    @abstractmethod
    async def count(self, owner: str | None = None) -> dict[str, int]:
        """How many sessions there are in each status (of one owner's, if given)."""

    @abstractmethod
    def append_events(
        self,
        session_id: str,
        events: Sequence[Event],
        session: Session | None = None,
        outbox: Sequence[Delivery] = (),
    ) -> asyncio.Future[None]:
        """Queue events for the log now, with `session` updated and the webhook deliveries the
        events cause added in the same commit, so state, events and outbox agree. The future
        completes once they are committed (SessionNotFound if the session is gone); writes complete
        in the order they were made."""

    @abstractmethod
    async def events_after(self, session_id: str, after_id: int) -> list[Event]:
        """The session's events with an id above `after_id`, oldest first."""

    @abstractmethod
    async def put_image(self, session_id: str, name: str, image: StoredImage) -> None: ...

    @abstractmethod
    async def get_image(self, session_id: str, name: str) -> StoredImage | None: ...

    @abstractmethod
    async def prune(
        self, finished_before: datetime, keep_at_most: int, pending_before: datetime | None = None
    ) -> list[str]:
        """Delete finished sessions last updated before `finished_before` and, if given, pending ones
        created before `pending_before`; then the oldest finished ones (and, with `pending_before`,
        then the oldest pending ones) until at most `keep_at_most` sessions are left. Running and
        interrupted sessions are never deleted. Returns the ids deleted."""

    @abstractmethod
    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Pending deliveries whose next attempt is due at `now`, the longest due first."""

    @abstractmethod
    async def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due; None if none is pending."""

    @abstractmethod
    async def record_attempt(self, delivery: Delivery) -> None:
        """Keep a delivery's state after an attempt (its session may be gone meanwhile: no error)."""

    @abstractmethod
    async def deliveries(self, session_id: str) -> list[Delivery]:
        """The session's webhook deliveries, oldest first."""

    @abstractmethod
    async def describe(self) -> dict[str, Any]:
        """What /health shows: the kind of store, and for a file its path, size and writability."""

    # -- who runs a session, when several instances share the store ------------------------------
    # A store in one process owns every run: these defaults say so. A shared store (Redis) keeps a
    # lease per running session, renewed while it runs, and refuses (RunTakenOver) a write for a
    # session whose lease this instance has lost, so a paused old owner can never write again.

    async def claim_run(self, session_id: str) -> bool:
        """Take the lease to run the session; False if another live instance holds it."""
        return True

    async def renew_runs(self) -> list[str]:
        """Renew every lease this instance holds; the ids of the sessions whose lease it lost."""
        return []

    async def release_run(self, session_id: str) -> None:
        """Give up the lease once the run has recorded how it ended (or stopped for a restart)."""

    async def orphaned_runs(self) -> list[str]:
        """Running or queued-to-resume sessions whose owner's lease has expired (it died)."""
        return []

    # -- the fleet's queue, on a shared store ----------------------------------------------------
    # One process keeps its queue in memory (the engine). Instances sharing a store share one queue
    # and one max_running, kept by the store, each step atomic: no two instances can take the last
    # slot, and the order of admission is the order of runs, whichever instance each came to.

    async def admit_run(self, session_id: str, max_running: int, max_queued: int) -> Admission:
        """Take a run slot (and the lease) for a pending session, or a place in the queue."""
        raise NotImplementedError("only a shared store keeps the fleet's queue")

    async def next_queued(self, max_running: int) -> str | None:
        """If a run slot is free, the first queued session, out of the queue, its lease taken."""
        raise NotImplementedError("only a shared store keeps the fleet's queue")

    async def fleet_queue(self) -> FleetQueue:
        """How many sessions run across the fleet, and which wait, in order."""
        raise NotImplementedError("only a shared store keeps the fleet's queue")

    async def close(self) -> None:
        """Finish pending writes and release what the store holds; called once at shutdown."""
