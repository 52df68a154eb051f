"""The event log seam: what the engine and the stream handlers need of a session's log, whatever keeps it."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from core.events import Event
from core.models import Session
from core.store import Delivery
from workflow.eventlog.subscription import CloseReason, Subscription


class EventLog(ABC):
    """Every session's append-only log: publish, commit, deliver.

    `append` hands an event to the store; once it is committed it is offered to the session's
    live subscribers, so nobody ever holds an event the store does not have. A second backend (many
    instances on a shared store) implements this same interface; the engine, the steps and the
    handlers never know which one they have.
    """

    def append(
        self, event: Event, state: Session | None = None, outbox: Sequence[Delivery] = ()
    ) -> asyncio.Future[None]:
        """Queue `event` (and the session's `state` and the webhook deliveries it causes, in the same
        commit, if given) now.

        The future completes once it is committed and offered to live subscribers; it fails with
        StoreUnavailable, or SessionNotFound once the session has been deleted. Appends commit in
        the order they were made. It must not be cancelled (a waiter that can be cancelled waits on
        `asyncio.shield` of it): the log reads its outcome as the commit's.
        """
        return self.append_many((event,), state, outbox)

    @abstractmethod
    def append_many(
        self, events: Sequence[Event], state: Session | None = None, outbox: Sequence[Delivery] = ()
    ) -> asyncio.Future[None]:
        """`append` for several events of one session, in order, in one commit: all or none."""

    @abstractmethod
    async def read_after(self, session_id: str, after_id: int) -> list[Event]:
        """The committed events with an id above `after_id`, oldest first."""

    @abstractmethod
    async def subscribe(self, session_id: str, after_id: int, *, nothing_after: bool = False) -> Subscription:
        """The events after `after_id`: first what is committed, then live ones, with no gap and no repeat.
        With `nothing_after` the caller knows that nothing after `after_id` is committed, nor can be
        before this returns (a pending session it holds the lock of and starts next): no read."""

    @abstractmethod
    def unsubscribe(self, subscription: Subscription) -> None: ...

    @abstractmethod
    def close_session(self, session_id: str, reason: CloseReason) -> None:
        """End every subscription to the session (each still gets what it was already given)."""

    @abstractmethod
    def close_all(self, reason: CloseReason) -> None: ...

    @abstractmethod
    def sweep(self) -> int:
        """Drop subscriptions whose reader has gone; returns how many. Run periodically."""

    @property
    @abstractmethod
    def subscriber_count(self) -> int: ...

    # Set by the engine: called with a session id when another instance asks the one running that
    # session to cancel it (only a log shared between instances ever calls it).
    on_cancel_request: Callable[[str], None] | None = None

    async def start(self) -> None:
        """Start whatever the log runs in the background (a shared log's readers and its control
        channel); called once before the service takes requests."""

    async def request_cancel(self, session_id: str) -> None:
        """Ask whichever instance runs the session to cancel it; nothing to do in one process."""

    async def close(self) -> None:
        """Stop whatever the log runs in the background and release its connections; called once at
        shutdown, after `close_all`."""
