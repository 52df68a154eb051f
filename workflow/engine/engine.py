"""The engine: the commands on sessions, each session's serialized through its lock, and their upkeep."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from core import events as ev
from core import metrics
from core.errors import (
    ImageNotFound,
    InvalidInput,
    NotRecorded,
    PendingLimitReached,
    QueueFull,
    ResultNotReady,
    SessionConflict,
    SessionNotFound,
    ShuttingDown,
    StoreUnavailable,
    Throttled,
    TooManySessions,
    Unavailable,
)
from core.events import Event, make_event
from core.models import Session, SessionResult, SessionStatus, StopReason, rfc3339, utcnow
from core.store import Delivery, FleetQueue, SessionStore, StoredImage
from workflow.engine.created import CreatedSessions
from workflow.engine.finished import FinishedSessions
from workflow.engine.locks import SessionLocks
from workflow.engine.options import EngineOptions
from workflow.engine.pipeline import Pipeline
from workflow.engine.run import CANCELLED, SHUTDOWN, Run, set_status
from workflow.eventlog import CloseReason, EventLog, LocalEventLog, Subscription
from workflow.providers.base import LessonProvider
from workflow.providers.images import DiagramImages, ImageProvider
from workflow.webhooks import WebhookPolicy, WebhookTarget

log = logging.getLogger("orchestrator.engine")

# Seconds a cancel waits for the instance running the session to record it.
CANCEL_ELSEWHERE_TIMEOUT = 10.0
# Where a stored image is served; the engine only fills in the blanks.
IMAGE_URL = "/api/sessions/{session_id}/images/{name}"


class Engine:
    """Creates, starts, cancels and deletes sessions; a `Run` owns each one while it runs.

    Every command that changes a session holds that session's lock and reads its state afresh
    inside it (from its Run if it is running, otherwise from the store), so no command acts on a
    stale copy and two commands on one session never interleave.
    """

    def __init__(
        self,
        store: SessionStore,
        provider: LessonProvider,
        options: EngineOptions,
        images: ImageProvider | None = None,
        event_log: EventLog | None = None,
        webhooks: WebhookPolicy | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.images = images or DiagramImages()
        self.options = options
        self.log = event_log or LocalEventLog(store, options.subscriber_buffer, options.replay_cache_bytes)
        self.log.on_cancel_request = self._cancel_requested
        self.webhooks = webhooks
        self.on_outbox: Callable[[], None] | None = None  # told once new deliveries are committed
        self.runs: dict[str, Run] = {}
        # Sessions this process lately stored as finished; none on a store other processes share.
        self._finished = FinishedSessions(kept=0) if store.shared else FinishedSessions()
        # Sessions created here that no command has touched yet; none on a shared store either.
        self._created = CreatedSessions(kept=0) if store.shared else CreatedSessions()
        # Sessions waiting for a run slot, first in first out (a dict keeps insertion order).
        self._queue: dict[str, None] = {}
        self._draining_queue: asyncio.Task[None] | None = None
        self._starting = 0  # sessions given a run slot whose Run is not yet launched
        self._queue_changed = False  # a queued session left: those behind it are told
        # On a shared store the queue is the fleet's, kept by the store; this is its last known state.
        self._fleet = FleetQueue(0, [])
        self._tasks: set[asyncio.Task[None]] = set()  # background work started from callbacks
        self._locks = SessionLocks()
        # The store's counts by status as /health last read them, and since when, if they are stale.
        self._last_counts: tuple[dict[str, int], str | None] = ({}, None)
        self._count: int | None = None  # sessions in the store, counted once, then kept up to date
        self._looking: dict[str, asyncio.Future[Session | None]] = {}  # shared reads, by session (_look)
        self.accepting = True

    # -- reading ------------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> Session:
        run = self.runs.get(session_id)
        session = run.session if run is not None else self._finished.get(session_id)
        if session is None:
            session = await self.store.get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    async def get_owned(self, session_id: str, owner: str | None) -> Session:
        """The session, if `owner` may see it (see _seen_by)."""
        return _seen_by(await self.get_session(session_id), owner)

    async def list_sessions(
        self, limit: int, status: str | None = None, before: str | None = None, owner: str | None = None
    ) -> list[Session]:
        try:
            wanted = SessionStatus(status) if status else None
        except ValueError:
            names = ", ".join(s.value for s in SessionStatus)
            raise InvalidInput(f"status must be one of {names}") from None
        if before is not None:
            await self.get_owned(before, owner)  # an unknown cursor is a 404, not an empty page
        sessions = await self.store.newest(limit, wanted, before, owner)
        return [self.runs[s.id].session if s.id in self.runs else s for s in sessions]

    async def deliveries(self, session_id: str) -> list[Delivery]:
        """The session's webhook messages and how their delivery went."""
        return await self.store.deliveries(session_id)

    async def get_result(self, session_id: str) -> SessionResult:
        session = await self.get_session(session_id)
        if session.result is None:
            raise ResultNotReady(f"session {session_id} is {session.status.value}; it has no result yet")
        return session.result

    async def get_image(self, session_id: str, name: str) -> StoredImage:
        await self.get_session(session_id)
        image = await self.store.get_image(session_id, name)
        if image is None:
            raise ImageNotFound(session_id, name)
        return image

    @property
    def running_count(self) -> int:
        """Sessions running in this process now."""
        return len(self.runs)

    @property
    def queue_length(self) -> int:
        """Sessions waiting for a free run slot (max_running): in this process, or on a shared
        store in the whole fleet (as last seen, at most lease_time/3 ago)."""
        return len(self._fleet.waiting) if self.store.shared else len(self._queue)

    @property
    def queue_full(self) -> bool:
        """Whether a start now would be refused: it would have to wait, and max_queued already wait."""
        return self._must_wait() and self.queue_length >= self.options.max_queued

    def _must_wait(self) -> bool:
        # First come, first served: while anyone waits, a new start waits behind them.
        if self.store.shared:
            running, max_running = self._fleet.running, self.options.max_running
            return bool(self._fleet.waiting) or bool(max_running and running >= max_running)
        return bool(self._queue) or not self._has_free_slot()

    async def queue_positions(self) -> dict[str, int]:
        """Where each queued session stands: 1 for the one that runs next."""
        waiting = (await self._look_at_fleet()).waiting if self.store.shared else self._queue
        return {session_id: position for position, session_id in enumerate(waiting, start=1)}

    async def stats(self) -> dict[str, Any]:
        """What /health shows. With the store unreachable, the last counts it gave (`counted_at`
        says when): liveness must not fail because the store does."""
        try:
            self._last_counts = (await self.store.count(), None)
        except StoreUnavailable:
            counts, counted_at = self._last_counts
            self._last_counts = (counts, counted_at or rfc3339(utcnow()))
        by_status, counted_at = self._last_counts
        return {
            "by_status": by_status,
            "counted_at": counted_at,  # None: counted now
            "running": len(self.runs),
            "subscribers": self.log.subscriber_count,
            "store": await self.store.describe(),
        }

    # -- commands -----------------------------------------------------------------------------

    async def create_session(
        self,
        topic: Any,
        metadata: dict[str, Any] | None = None,
        owner: str = "",
        webhooks: Sequence[WebhookTarget] = (),
    ) -> Session:
        """A new pending session of `owner`'s, committed to the store before this returns; its own
        webhook targets are kept with it."""
        topic = self._checked_topic(topic)
        self._check_accepting()
        if await self._session_count() >= self.options.max_sessions:
            await self.prune(room_for=1)
            if await self._session_count() >= self.options.max_sessions:
                raise TooManySessions(
                    f"{self.options.max_sessions} sessions are kept and none has finished; try again later"
                )
        own = {"webhooks": [target.to_json() for target in webhooks]} if webhooks else {}
        # Who writes it, kept with the lesson: a reader must know whether a model or the built-in
        # templates (a scaffold without facts) wrote it.
        written_by = {"provider": self.provider.name, "model": self.provider.model}
        session = Session.new(topic, {**written_by, **(metadata or {}), **own}, owner)
        try:
            # The store counts the owner's pending sessions as it stores this one, in one step.
            await self.store.create(session, max_pending=self.options.max_pending_per_client)
        except PendingLimitReached as exc:
            raise Throttled(
                f"you have {exc.pending} sessions that were never run; run or delete some first "
                f"(they expire after {self.options.pending_ttl:g} s)",
                retry_after=60,
            ) from None
        self._count = None if self._count is None else self._count + 1
        self._created.keep(session)
        log.info("session %s created for topic %r", session.id, topic, extra={"session_id": session.id})
        return session

    async def create_and_start(
        self, topic: Any, owner: str = "", webhooks: Sequence[WebhookTarget] = ()
    ) -> Session:
        """Create a session and start it at once, for work nobody watches; a start that is refused
        (queue full, draining) leaves no session behind."""
        session = await self.create_session(topic, owner=owner, webhooks=webhooks)
        try:
            return await self.start(session.id)
        except Unavailable:
            with contextlib.suppress(SessionNotFound, StoreUnavailable):
                await self.delete(session.id)
            raise

    def _checked_topic(self, topic: Any) -> str:
        if not isinstance(topic, str) or not topic.strip():
            raise InvalidInput("topic must be a non-blank string")
        if "\x00" in topic or not _encodable(topic):
            raise InvalidInput("topic must be text: no NUL character and no lone UTF-16 surrogate")
        topic = topic.strip()
        if len(topic) > self.options.max_topic_length:
            raise InvalidInput(f"topic must be at most {self.options.max_topic_length} characters")
        return topic

    async def start(self, session_id: str) -> Session:
        """Start a pending session: it runs on its own until it ends, whoever is watching, or waits
        in the queue (`queued`) while max_running sessions run."""
        async with self._locks.hold(session_id):
            return await self._start(session_id)

    async def _start(self, session_id: str, read: Session | None = None) -> Session:
        """With the session's lock held; `read`: the session as the caller read it under that lock."""
        session = read if read is not None else await self._fresh(session_id)
        _check_pending(session)
        self._check_accepting()
        if self.store.shared:
            await self._start_in_fleet(session)
        elif not self._must_wait():
            await self._begin(session)
        elif self.queue_full:
            raise _queue_full(len(self.runs), len(self._queue))
        else:
            await self._enqueue(session, len(self._queue) + 1, len(self.runs))
            self._queue[session.id] = None
        return session

    async def _start_in_fleet(self, session: Session) -> None:
        """On a shared store the fleet's max_running and queue decide, in one step of the store, so
        two instances can never both take the last slot. With the session's lock held."""
        admission = await self.store.admit_run(session.id, self.options.max_running, self.options.max_queued)
        self._fleet = FleetQueue(admission.running, self._fleet.waiting)
        if admission.verdict == "run":
            await self._begin(session, claimed=True)
        elif admission.verdict == "queued":
            # Until its `queued` record is stored, no instance takes it from the queue (it is still
            # pending); should that record fail, it stays pending and a later start finds its place.
            await self._enqueue(session, admission.position, admission.running)
            self._drain_queue_soon()  # a slot may have come free meanwhile
        elif admission.verdict == "full":
            raise _queue_full(admission.running, admission.queued)
        else:
            raise SessionConflict(f"session {session.id} is being started by another instance")

    def _has_free_slot(self) -> bool:
        taken = len(self.runs) + self._starting
        return not self.options.max_running or taken < self.options.max_running

    async def _begin(self, session: Session, claimed: bool = False) -> None:
        """Run the session now. With its lock held; its slot is taken before the first await (its
        lease too, if `claimed`)."""
        self._starting += 1
        try:
            if not claimed and not await self.store.claim_run(session.id):
                raise SessionConflict(f"session {session.id} is being started by another instance")
            session.status = SessionStatus.RUNNING
            session.run_started_ns = time.time_ns()
            session.touch()
            try:
                await self.store.update(session)
            except StoreUnavailable:
                # Not started after all: its lease must not hold a slot of the fleet (it would be
                # renewed for ever). If Redis is gone, the lease is no longer renewed and expires.
                with contextlib.suppress(StoreUnavailable):
                    await self.store.release_run(session.id)
                raise
            self._launch(session)
        finally:
            self._starting -= 1

    async def _enqueue(self, session: Session, position: int, running: int) -> None:
        """Record the session queued, with its `queued` event, in one commit. With its lock held."""
        session.status = SessionStatus.QUEUED
        session.metadata["queued_at_ns"] = time.time_ns()  # the order survives a restart
        session.touch()
        try:
            await asyncio.shield(self._announce_position(session, position, running))  # see EventLog.append
        except StoreUnavailable as exc:
            raise NotRecorded("start", exc) from exc
        log.info("session %s queued at position %d", session.id, position, extra={"session_id": session.id})

    def _announce_position(self, session: Session, position: int, running: int) -> asyncio.Future[None]:
        """Append a `queued` event with the session's state; the future is its commit."""
        session.last_event_id += 1
        data = {"position": position, "running": running, "max_running": self.options.max_running}
        return self._append((make_event(session.last_event_id, ev.QUEUED, session.id, data),), session)

    def _append(
        self,
        events: Sequence[Event],
        session: Session | None = None,
        outbox: Sequence[Delivery] | None = None,
    ) -> asyncio.Future[None]:
        """Append to the log, in one commit; with the session's state, the webhooks the events cause
        (`outbox`, made here if None) go in the same commit, and the dispatcher is told once they
        are stored."""
        if outbox is None:
            outbox = self._outbox(events, session) if session is not None else ()
        committed = self.log.append_many(events, session, outbox)
        if outbox and self.on_outbox is not None:
            wake = self.on_outbox
            committed.add_done_callback(lambda _: wake())
        return committed

    def _outbox(self, events: Sequence[Event], session: Session) -> Sequence[Delivery]:
        """The webhook deliveries the events cause, made from the session as it is now."""
        if not self.webhooks:
            return ()
        return [delivery for event in events for delivery in self.webhooks.outbox(event, session)]

    def _leave_queue(self, session_id: str) -> None:
        """A queued session was cancelled or deleted: those behind it move up. (On a shared store
        it has left the fleet's queue with its new state; the others are told their places.)"""
        if session_id in self._queue or self.store.shared:
            self._queue.pop(session_id, None)
            self._queue_changed = True
            self._drain_queue_soon()

    def _drain_queue_soon(self) -> None:
        """Start queued sessions while there are free slots, then tell the rest where they stand;
        one drain at a time, started from callbacks that cannot wait."""
        if not self.accepting:
            return  # shutting down: the queue waits for the next start
        if self._draining_queue is None or self._draining_queue.done():
            self._draining_queue = asyncio.get_running_loop().create_task(self._drain_queue())

    async def _drain_queue(self) -> None:
        if self.store.shared:
            await self._drain_fleet_queue()
            return
        while True:
            moved = False
            while self._queue and self._has_free_slot() and self.accepting:
                moved = True
                if not await self._start_next():
                    return  # the store failed: the next run that ends tries again
            if moved or self._queue_changed:
                self._queue_changed = False
                await self._announce_positions(list(self._queue), len(self.runs))
            # A slot freed or a session left while positions were announced: go round again.
            if not (self._queue_changed or (self._queue and self._has_free_slot() and self.accepting)):
                return

    async def _start_next(self) -> bool:
        """Run the first queued session; False if the store did not take it (it stays first)."""
        session_id = next(iter(self._queue))
        async with self._locks.hold(session_id):
            if session_id not in self._queue:
                return True  # it left the queue while we waited for its lock
            del self._queue[session_id]
            try:
                await self._leave_queue_to_run(session_id, claimed=False)
            except StoreUnavailable as exc:
                log.warning("queued session %s could not start yet: %s", session_id, exc)
                self._queue = {session_id: None, **self._queue}
                return False
        return True

    async def _leave_queue_to_run(self, session_id: str, claimed: bool) -> None:
        """Run a session that was first in the queue, if it still waits. With its lock held."""
        try:
            session = await self._fresh(session_id)
            if session.status == SessionStatus.QUEUED:
                waited = (time.time_ns() - session.metadata.get("queued_at_ns", time.time_ns())) / 1e9
                await self._begin(session, claimed)
                metrics.QUEUE_WAIT.observe(waited)
                log.info("session %s leaves the queue after %.3f s", session_id, waited)
                return
        except (SessionNotFound, SessionConflict):
            pass  # deleted meanwhile, or another instance runs it
        if claimed:
            await self.store.release_run(session_id)

    async def _drain_fleet_queue(self) -> None:
        """On a shared store: run queued sessions here while the fleet has free slots (the store
        hands each to one instance only), then tell those still waiting their places."""
        moved = False
        try:
            while self.accepting:
                session_id = await self.store.next_queued(self.options.max_running)
                if session_id is None:
                    break
                moved = True
                async with self._locks.hold(session_id):
                    await self._leave_queue_to_run(session_id, claimed=True)
            self._fleet = await self.store.fleet_queue()
        except StoreUnavailable as exc:
            # A popped session keeps its lease until it expires; then the store queues it again.
            log.warning("the queue could not be served: %s", exc)
            return
        if moved or self._queue_changed:
            self._queue_changed = False
            await self._announce_positions(self._fleet.waiting, self._fleet.running)

    async def _look_at_fleet(self) -> FleetQueue:
        self._fleet = await self.store.fleet_queue()
        return self._fleet

    async def _announce_positions(self, waiting: list[str], running: int) -> None:
        """Tell every queued session its new place. Their commits are awaited together, each
        session's lock held until its event is stored, so no command reads a stale event id."""
        async with contextlib.AsyncExitStack() as locks:
            commits = []
            for position, session_id in enumerate(waiting, start=1):
                await locks.enter_async_context(self._locks.hold(session_id))
                try:
                    session = await self._fresh(session_id)
                except SessionNotFound:
                    continue
                if session.status == SessionStatus.QUEUED:
                    commits.append(self._announce_position(session, position, running))
            told = (asyncio.shield(commit) for commit in commits)  # see EventLog.append
            for failure in await asyncio.gather(*told, return_exceptions=True):
                # On a shared store another instance may have just taken it, or told it first.
                if isinstance(failure, Exception):
                    log.info("a queued session was not told its place: %s", failure)

    async def cancel(self, session_id: str) -> Session:
        """Cancel a pending or running session; answers once the cancellation is stored."""
        async with self._locks.hold(session_id):
            run = self.runs.get(session_id)
            if run is not None:
                await run.stop(StopReason.CANCELLED)
                if run.record_error is not None:
                    raise NotRecorded("cancellation", run.record_error) from run.record_error
                session = run.session
                if session.status == SessionStatus.CANCELLED:
                    return session
            else:
                session = await self._fresh(session_id)
                if self.store.shared and not session.status.finished:
                    return await self._cancel_elsewhere(session)
                if not session.status.finished:
                    await self._record_cancelled(session)
                    self._leave_queue(session_id)
                    return session
            raise SessionConflict(f"session {session_id} already ended ({session.status.value})")

    async def _cancel_elsewhere(self, session: Session) -> Session:
        """On a shared store: a session nobody runs is cancelled here, holding its lease so that no
        instance can start it meanwhile. One another instance runs is asked to cancel, and the
        answer waits until the store says how the run ended."""
        if await self.store.claim_run(session.id):
            try:
                session = await self._fresh(session.id)
                if session.status.finished:
                    raise SessionConflict(f"session {session.id} already ended ({session.status.value})")
                await self._record_cancelled(session)
            finally:
                await self.store.release_run(session.id)
            self._leave_queue(session.id)
            return session
        deadline = time.monotonic() + CANCEL_ELSEWHERE_TIMEOUT
        asked = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - asked >= 1.0:
                # Again each second: an instance that just took it from the queue may not have
                # started its run yet when the first request arrives.
                await self.log.request_cancel(session.id)
                asked = time.monotonic()
            await asyncio.sleep(0.05)
            session = await self._fresh(session.id)
            if session.status == SessionStatus.CANCELLED:
                return session
            if session.status.finished:
                raise SessionConflict(f"session {session.id} already ended ({session.status.value})")
        raise NotRecorded("cancellation", TimeoutError("the instance running the session did not answer"))

    def _cancel_requested(self, session_id: str) -> None:
        """Another instance asks for the cancellation of a session; only the one running it acts."""
        if session_id in self.runs:
            self._background(self.cancel(session_id), f"cancelling {session_id} for another instance")

    async def _record_cancelled(self, session: Session) -> None:
        """Cancel a session that is not running: its state and its terminal event, in one commit."""
        set_status(session, CANCELLED.status, CANCELLED.error)
        session.last_event_id += 1
        event = make_event(session.last_event_id, ev.ERROR, session.id, CANCELLED.data)
        try:
            await asyncio.shield(self._append((event,), session))  # see EventLog.append
        except StoreUnavailable as exc:
            raise NotRecorded("cancellation", exc) from exc
        self.log.close_session(session.id, CloseReason.ENDED)

    async def delete(self, session_id: str) -> None:
        """Stop the session if it runs, then forget it with its events and images."""
        async with self._locks.hold(session_id):
            run = self.runs.get(session_id)
            status = run.session.status if run is not None else (await self._fresh(session_id)).status
            self._finished.forget(session_id)  # first: from here on, only the store can tell
            if run is not None:
                await run.stop(StopReason.DELETED)
            if not await self.store.delete(session_id):
                raise SessionNotFound(session_id)
            self._leave_queue(session_id)
            self._count = None
            self.log.close_session(session_id, CloseReason.DELETED)
        log.info("session %s deleted (it was %s)", session_id, status.value, extra={"session_id": session_id})

    async def subscribe(
        self,
        session_id: str,
        after_id: int = 0,
        *,
        start: bool = False,
        must_start: bool = False,
        owner: str | None = None,
    ) -> Subscription | None:
        """A subscription to the session's events after `after_id`, or None if there is nothing left to send.

        With `start`, a pending session is started once the subscription is in place, so not even
        its first event can be missed; with `must_start`, one that is not pending is a conflict. A
        position past the end of the log is the end of the log: a live session's stream goes on
        with its next event, a finished one has nothing to send. A session that is not running
        replays its log and the subscription ends there. With `owner`, another's session is not found.
        """
        if after_id < 0:
            raise InvalidInput("Last-Event-ID must be a non-negative integer")
        if must_start:
            # A start takes the lock whatever it finds: its one read of the session is under it.
            async with self._locks.hold(session_id):
                session = _seen_by(await self._fresh(session_id), owner)
                _check_pending(session)
                return await self._subscribe(session, after_id, will_start=True, must_start=True)
        # The one read of the session that attaching needs (with the owner's check in it: on Redis a
        # stream costs Redis commands, and 500 streams of one session would cost 500 times as many).
        session = await self._look(session_id, owner)
        if not (start and session.status == SessionStatus.PENDING):
            if session.status in (SessionStatus.RUNNING, SessionStatus.QUEUED) and not self._is_live(session):
                # Stored as started, yet not run or queued here: a start still under way (its state
                # is committed before its run is). Its stream is decided once the starter is through.
                async with self._locks.hold(session_id):
                    session = await self._fresh(session_id)
            # Nothing to start: attaching needs no lock (a reconnect storm must not queue up).
            return await self._subscribe(session, after_id, will_start=False)
        async with self._locks.hold(session_id):
            session = await self._fresh(session_id)
            will_start = session.status == SessionStatus.PENDING
            return await self._subscribe(session, after_id, will_start)

    async def _look(self, session_id: str, owner: str | None) -> Session:
        """The session for a stream to attach to, which only looks at it. On a store only this
        process writes, streams asked at once share one read of a session not run here (and its
        object): it is finished, so it changes no more; or pending, and a start reads it again
        under its lock; or being started, and is looked at again under its lock (see subscribe)."""
        if self.store.shared or session_id in self.runs:
            return await self.get_owned(session_id, owner)
        reading = self._looking.get(session_id)
        if reading is None:
            reading = self._looking[session_id] = asyncio.ensure_future(self.store.get(session_id))
            reading.add_done_callback(functools.partial(self._looked, session_id))
        session = await asyncio.shield(reading)  # one caller giving up does not end the others' read
        if session is None or (owner is not None and session.owner != owner):
            raise SessionNotFound(session_id)
        return session

    def _looked(self, session_id: str, reading: asyncio.Future[Session | None]) -> None:
        del self._looking[session_id]
        if not reading.cancelled():
            reading.exception()  # taken, even if every caller gave up on it

    async def _subscribe(
        self, session: Session, after_id: int, will_start: bool, must_start: bool = False
    ) -> Subscription | None:
        # From the check of `runs` to the subscription being in place there is no await, so a run
        # that ends later ends this subscription too.
        if not self._is_live(session) and not will_start and after_id >= session.last_event_id:
            return None
        # A pending session about to be started here, under its lock, has nothing after its last
        # event, nor can it have until the start: its stream starts without a read of the log. (On
        # a shared store another instance may start it meanwhile, so its log is read there.)
        nothing_after = will_start and not self.store.shared and after_id >= session.last_event_id
        subscription = await self.log.subscribe(
            session.id, min(after_id, session.last_event_id), nothing_after=nothing_after
        )
        try:
            if will_start:
                await self._start(session.id, session)  # read under the lock this caller holds
        except SessionConflict:
            if must_start or not self.store.shared:
                self.log.unsubscribe(subscription)
                raise
            # Another instance started it first (the lock above is this process's only), perhaps
            # not yet recorded as running: follow it; its terminal event ends this subscription.
            return subscription
        except BaseException:
            self.log.unsubscribe(subscription)
            raise
        running_here = session.id in self.runs or session.id in self._queue
        # Read again only when what was read before the start cannot tell (another instance ran it).
        if not running_here and not self._is_live(await self._fresh(session.id) if will_start else session):
            subscription.close(CloseReason.ENDED)
        return subscription

    def _is_live(self, session: Session) -> bool:
        """Running or queued here (or, on a shared store, anywhere): its stream stays open for what
        comes next. On a shared store the other instance's terminal event ends it."""
        if session.id in self.runs or session.id in self._queue:
            return True
        return self.store.shared and not session.status.finished and session.status != SessionStatus.PENDING

    def unsubscribe(self, subscription: Subscription) -> None:
        self.log.unsubscribe(subscription)

    # -- runs ---------------------------------------------------------------------------------

    def _launch(self, session: Session) -> None:
        pipeline = Pipeline(self.provider, self.images, self.options, self._save_image)
        run = Run(session, self.log, self.store, pipeline, self._append, self._outbox)
        self.runs[session.id] = run
        run.task.add_done_callback(lambda task: self._run_ended(run, task))

    def _run_ended(self, run: Run, task: asyncio.Task[None]) -> None:
        if self.runs.get(run.session.id) is run:
            del self.runs[run.session.id]
            if run.stored_finished:
                self._finished.keep(run.session)
        if self.store.shared:
            self._background(self._release_slot(run.session.id), f"releasing {run.session.id}")
        elif self._queue:
            self._drain_queue_soon()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            # A Run decides every outcome itself; anything left here is a bug, so make it loud.
            log.error("session %s run crashed", run.session.id, exc_info=task.exception())

    async def _release_slot(self, session_id: str) -> None:
        """On a shared store: give up the run's lease, which frees its slot in the fleet, and then
        take the next queued session, if any, here."""
        await self.store.release_run(session_id)
        self._drain_queue_soon()

    def _background(self, work: Awaitable[Any], what: str) -> None:
        """Work a callback cannot wait for; a failure is logged, never lost silently."""

        async def run() -> None:
            try:
                await work
            except Exception as exc:
                log.warning("%s failed: %s", what, exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def keep_leases(self) -> None:
        """Renew this instance's run leases (run every lease_time/3 on a shared store); a run whose
        lease was lost (this process was paused past it) stops without recording anything. Then
        serve the fleet's queue: slots freed by an instance that died are only found by looking."""
        for session_id in await self.store.renew_runs():
            run = self.runs.get(session_id)
            if run is not None:
                log.warning("session %s: lease lost; another instance runs it now", session_id)
                await run.stop(StopReason.MOVED)
        self._drain_queue_soon()

    async def take_over_orphans(self) -> int:
        """Resume, from their checkpoints, sessions whose instance died (its lease expired)."""
        taken = 0
        for session_id in await self.store.orphaned_runs():
            if not self.accepting or session_id in self.runs:
                continue
            async with self._locks.hold(session_id):
                if session_id in self.runs or not await self.store.claim_run(session_id):
                    continue
                session = await self.store.get(session_id)
                if session is None or session.status.finished:
                    await self.store.release_run(session_id)
                    continue
                log.info(
                    "taking over session %s from event %d (its instance stopped renewing its lease)",
                    session_id,
                    session.last_event_id,
                    extra={"session_id": session_id},
                )
                session.status = SessionStatus.RUNNING
                session.metadata.pop("error", None)
                self._launch(session)
                taken += 1
        return taken

    async def _save_image(self, session_id: str, name: str, content_type: str, data: bytes) -> str:
        await self.store.put_image(session_id, name, StoredImage(content_type, data))
        return IMAGE_URL.format(session_id=session_id, name=name)

    async def resume_unfinished(self) -> int:
        """Continue every session a crash or a stop left running or interrupted (they had their slots
        first); then put queued ones back in the queue in their order. Returns how many resumed."""
        unfinished = await self.store.unfinished()
        # On a shared store, only what no live instance runs (or this one ran before it stopped).
        resumed = [
            s for s in unfinished if s.status != SessionStatus.QUEUED and await self.store.claim_run(s.id)
        ]
        for session in resumed:
            log.info(
                "resuming session %s from event %d",
                session.id,
                session.last_event_id,
                extra={"session_id": session.id},
            )
            session.status = SessionStatus.RUNNING
            session.metadata.pop("error", None)
            self._launch(session)
        self._requeue(unfinished)
        return len(resumed)

    async def mark_unfinished_interrupted(self) -> int:
        """With resume off: record that sessions a crash left running are not running any more.
        Queued sessions never started, so they stay queued and run in their turn."""
        unfinished = await self.store.unfinished()
        # On a shared store, only what no live instance runs.
        sessions = [
            s for s in unfinished if s.status == SessionStatus.RUNNING and await self.store.claim_run(s.id)
        ]
        for session in sessions:
            set_status(session, SessionStatus.INTERRUPTED, "the service stopped during the run")
            await self.store.update(session)
            await self.store.release_run(session.id)
        self._requeue(unfinished)
        return len(sessions)

    def _requeue(self, unfinished: list[Session]) -> None:
        if self.store.shared:
            self._drain_queue_soon()  # the fleet's queue is kept in the store
            return
        queued = [s for s in unfinished if s.status == SessionStatus.QUEUED]
        queued.sort(key=lambda s: s.metadata.get("queued_at_ns", 0))
        self._queue.update(dict.fromkeys(s.id for s in queued))
        if queued:
            log.info("%d sessions are queued, as they were before the stop", len(queued))
            self._drain_queue_soon()

    async def _fresh(self, session_id: str) -> Session:
        """The session as it is now: its Run's if it is running, else the store's. Under its lock.
        One created here that no command has touched is taken as it was stored, with no read."""
        run = self.runs.get(session_id)
        created = self._created.take(session_id) if run is None else None
        return created if created is not None else await self.get_session(session_id)

    # -- upkeep -------------------------------------------------------------------------------

    async def _session_count(self) -> int:
        if self._count is None:
            self._count = sum((await self.store.count()).values())
        return self._count

    def _check_accepting(self) -> None:
        if not self.accepting:
            raise ShuttingDown(SHUTDOWN)

    async def prune(self, room_for: int = 0) -> int:
        """Delete finished sessions past their retention and pending ones past pending_ttl; then, to
        stay within max_sessions (less `room_for`, to make room for new ones), the oldest finished
        ones and then the oldest that were never run. Only running work can fill the store."""
        now = utcnow()
        deleted = await self.store.prune(
            now - timedelta(seconds=self.options.retention),
            self.options.max_sessions - room_for,
            pending_before=now - timedelta(seconds=self.options.pending_ttl),
        )
        self._count = None
        for session_id in deleted:
            self._finished.forget(session_id)
            self._created.forget(session_id)
            self.log.close_session(session_id, CloseReason.DELETED)
        if deleted:
            log.info("pruned %d finished sessions", len(deleted))
        return len(deleted)

    def sweep(self) -> int:
        return self.log.sweep()

    async def close_providers(self) -> None:
        # Both may share one client; closing a closed client is harmless.
        await self.provider.close()
        await self.images.close()

    async def shutdown(self, timeout: float) -> None:
        """Stop taking work, let running sessions finish for up to `timeout` s, then interrupt the rest."""
        self.accepting = False
        running = {run.task for run in self.runs.values()}
        if running:
            log.info("waiting up to %g s for %d running sessions", timeout, len(running))
            await asyncio.wait(running, timeout=timeout)
        leftover = list(self.runs.values())
        if leftover:
            await asyncio.gather(*(run.stop(StopReason.INTERRUPTED) for run in leftover))
            log.warning("interrupted %d sessions that were still running", len(leftover))
        self.log.close_all(CloseReason.SHUTDOWN)
        # What runs ending set off (a lease to give back, the queue to serve) is finished or dropped:
        # the queue is served by whoever runs next, and nothing is left pending when the loop ends.
        if self._draining_queue is not None:
            self._draining_queue.cancel()
        background = [t for t in (self._draining_queue, *self._tasks) if t is not None]
        if background:
            await asyncio.wait(background, timeout=5)
        await self.log.close()  # stops a shared log's readers


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _seen_by(session: Session, owner: str | None) -> Session:
    """The session, if `owner` may see it (None: anyone may); otherwise not found, so that a
    caller cannot learn that another's session exists."""
    if owner is not None and session.owner != owner:
        raise SessionNotFound(session.id)
    return session


def _check_pending(session: Session) -> None:
    if session.status != SessionStatus.PENDING:
        raise SessionConflict(f"session {session.id} was already started (it is {session.status.value})")


def _queue_full(running: int, waiting: int) -> QueueFull:
    return QueueFull(
        f"{running} sessions are running and {waiting} are waiting, the most this service takes; "
        "try again later",
        retry_after=30,
    )
