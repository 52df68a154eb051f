"""The engine: owns every session's run as a task, publishes its events, and hands out subscriptions."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core import events as ev
from core.context import session_id_var
from core.errors import (
    BudgetExceeded,
    ImageNotFound,
    InvalidInput,
    ProviderError,
    ResultNotReady,
    SessionConflict,
    SessionNotFound,
    ShuttingDown,
    StepFailed,
    StepTimedOut,
    StoreUnavailable,
    TooManySessions,
)
from core.events import Event, make_event
from core.models import (
    Session,
    SessionResult,
    SessionStatus,
    SessionStep,
    StepStatus,
    utcnow,
)
from core.store import SessionStore, StoredImage
from workflow.eventlog.subscription import Subscription
from workflow.providers.base import LessonProvider
from workflow.providers.images import DiagramImages, ImageProvider
from workflow.steps.pipeline import STEPS, StepContext
from workflow.steps.sink import StepSink

log = logging.getLogger("orchestrator.engine")

SHUTDOWN = "the server is shutting down"
DELETED = "the session was deleted"
IDLE = "the session is not running"
STORE_DOWN = "the store cannot be written"
RESTARTED = "the service stopped while this step ran; its partial output is void"
# A run with more uncommitted events than this waits for its latest commit before going on. It
# bounds how far a run gets ahead of its store, and so the burst its readers are offered at once.
MAX_UNCOMMITTED = 32


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    step_timeout: float = 120.0
    subscriber_buffer: int = 2000
    retention: float = 7 * 86400.0  # seconds a finished session is kept
    max_sessions: int = 100_000
    retries: int = 3  # of a step, after a transient provider failure
    retry_initial_delay: float = 1.0
    retry_max_delay: float = 30.0
    optional_steps: frozenset[str] = frozenset()
    token_budget: int = 0  # per session; 0 = none
    prompt_price: float = 0.0  # per million tokens; 0 = no cost figure
    completion_price: float = 0.0
    # Where a stored image is served; the engine only fills in the blanks.
    image_url: str = "/api/sessions/{session_id}/images/{name}"


class Engine:
    """Runs sessions through the five steps, one task per running session, many at once.

    A running session's live object is kept in `_live`, so readers see its latest state; every
    state change is saved together with the event that announces it, in one commit.
    """

    def __init__(
        self,
        store: SessionStore,
        provider: LessonProvider,
        options: EngineOptions,
        images: ImageProvider | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.images = images or DiagramImages()
        self.options = options
        self._live: dict[str, Session] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._subscribers: dict[str, set[Subscription]] = {}
        self._stop_reasons: dict[str, SessionStatus] = {}  # why a task was cancelled
        self._count: int | None = None  # sessions in the store, counted once, then kept up to date
        self._write_failures: dict[str, BaseException] = {}  # a run whose writes failed stops
        self._uncommitted: dict[str, int] = {}  # events published and not yet committed, by session
        self.accepting = True

    async def _session_count(self) -> int:
        if self._count is None:
            self._count = sum((await self.store.count()).values())
        return self._count

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(self, topic: str, metadata: dict[str, Any] | None = None) -> Session:
        """A new pending session, committed to the store before this returns."""
        self._check_accepting()
        if await self._session_count() >= self.options.max_sessions:
            await self.prune(room_for=1)
            if await self._session_count() >= self.options.max_sessions:
                raise TooManySessions(
                    f"{self.options.max_sessions} sessions are kept and none has finished; try again later"
                )
        session = Session.new(topic, {"provider": self.provider.name, **(metadata or {})})
        await self.store.create(session)
        self._count = None if self._count is None else self._count + 1
        log.info("session %s created for topic %r", session.id, topic, extra={"session_id": session.id})
        return session

    async def get_session(self, session_id: str) -> Session:
        session = self._live.get(session_id) or await self.store.get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    async def list_sessions(
        self, limit: int, status: str | None = None, before: str | None = None
    ) -> list[Session]:
        try:
            wanted = SessionStatus(status) if status else None
        except ValueError:
            names = ", ".join(s.value for s in SessionStatus)
            raise InvalidInput(f"status must be one of {names}") from None
        if before is not None:
            await self.get_session(before)  # an unknown cursor is a 404, not an empty page
        sessions = await self.store.newest(limit, wanted, before)
        return [self._live.get(s.id, s) for s in sessions]

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

    async def stats(self) -> dict[str, Any]:
        return {
            "by_status": await self.store.count(),
            "running": len(self._tasks),
            "subscribers": sum(len(subs) for subs in self._subscribers.values()),
            "store": await self.store.describe(),
        }

    def _check_accepting(self) -> None:
        if not self.accepting:
            raise ShuttingDown(SHUTDOWN)

    # -- running ------------------------------------------------------------------------------

    async def start(self, session_id: str) -> Session:
        """Start a pending session; it runs on its own until it ends, whoever is watching."""
        session = await self.get_session(session_id)
        # Re-read after the await: another request may have started it meanwhile. From here to
        # `_live[...] = session` there is no await, so only one start can get through.
        session = self._live.get(session_id, session)
        self._check_pending(session)
        self._check_accepting()
        session.status = SessionStatus.RUNNING
        session.run_started_ns = time.time_ns()
        session.touch()
        self._live[session_id] = session
        try:
            await self.store.save(session)
        except BaseException:
            del self._live[session_id]
            session.status = SessionStatus.PENDING
            raise
        self._launch(session)
        return session

    @staticmethod
    def _check_pending(session: Session) -> None:
        if session.status != SessionStatus.PENDING:
            raise SessionConflict(f"session {session.id} was already started (it is {session.status.value})")

    def _launch(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self._run(session), name=f"session-{session.id}")
        self._tasks[session.id] = task
        task.add_done_callback(lambda t: self._run_finished(session.id, t))

    def _run_finished(self, session_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(session_id, None)
        self._live.pop(session_id, None)
        self._write_failures.pop(session_id, None)
        if not task.cancelled() and task.exception() is not None:
            # _run handles every failure itself; anything left here is a bug, so make it loud.
            log.error("session %s run crashed", session_id, exc_info=task.exception())

    async def resume_unfinished(self) -> int:
        """Continue every session a crash or a stop left running or interrupted; returns how many."""
        sessions = await self.store.unfinished()
        for session in sessions:
            log.info(
                "resuming session %s from event %d",
                session.id,
                session.last_event_id,
                extra={"session_id": session.id},
            )
            session.status = SessionStatus.RUNNING
            session.metadata.pop("error", None)
            self._live[session.id] = session
            self._launch(session)
        return len(sessions)

    async def mark_unfinished_interrupted(self) -> int:
        """With resume off: record that sessions a crash left running are not running any more."""
        sessions = [s for s in await self.store.unfinished() if s.status == SessionStatus.RUNNING]
        for session in sessions:
            await self._finish(session, SessionStatus.INTERRUPTED, "the service stopped during the run")
        return len(sessions)

    async def _run(self, session: Session) -> None:
        session_id_var.set(session.id)
        log.info("session %s running", session.id)
        try:
            for step in session.steps:
                if step.status != StepStatus.COMPLETED:
                    await self._run_step(session, step)
            final = session.checkpoints["finalize-lesson"]
            usage = session.metadata.get("usage")
            session.result = SessionResult(
                lesson=final["lesson"],
                images=final["images"],
                summary=final["summary"],
                duration_ns=time.time_ns() - session.run_started_ns,
                completed_at=utcnow(),
                partial=any(s.status == StepStatus.FAILED for s in session.steps),
                metadata={"usage": usage} if usage else {},
            )
            self._set_status(session, SessionStatus.COMPLETED)
            await self.publish(session, ev.FINAL, {"result": session.result.to_json()}, save=True, wait=True)
        except StepFailed as exc:
            self._set_status(session, SessionStatus.FAILED, f"{exc.step}: {exc}")
            data = {"status": "failed", "error": str(exc), "step": exc.step}
            await self._publish_or_log(session, ev.ERROR, data)
        except asyncio.CancelledError:
            await self._record_stop(session, self._stop_reasons.get(session.id, SessionStatus.CANCELLED))
        except StoreUnavailable as exc:
            # Nothing more can be kept, so nothing more is sent; a restart resumes from the store.
            log.error("session %s stopped: %s", session.id, exc)
            self._close_subscriptions(session.id, STORE_DOWN)
        except Exception as exc:
            log.exception("session %s failed unexpectedly", session.id)
            self._set_status(session, SessionStatus.FAILED, f"internal error: {exc}")
            await self._publish_or_log(session, ev.ERROR, {"status": "failed", "error": "internal error"})
        log.info("session %s %s", session.id, session.status.value)

    async def _publish_or_log(self, session: Session, event_type: str, data: dict[str, Any]) -> None:
        try:
            await self.publish(session, event_type, data, save=True, wait=True)
        except StoreUnavailable as exc:
            log.error("session %s: could not record its end: %s", session.id, exc)
            self._close_subscriptions(session.id, STORE_DOWN)
            if session.id not in self._tasks:
                self._write_failures.pop(session.id, None)

    async def _record_stop(self, session: Session, status: SessionStatus) -> None:
        if status == SessionStatus.CANCELLED:
            self._set_status(session, status, "cancelled")
            data = {"status": "cancelled", "error": "the session was cancelled"}
            await self._publish_or_log(session, ev.ERROR, data)
        else:
            # An interrupted session gets no terminal event: it is not over, only paused.
            await self._finish(session, status, SHUTDOWN)

    def _set_status(self, session: Session, status: SessionStatus, error: str = "") -> None:
        session.status = status
        if error:
            session.metadata["error"] = error
        if status.finished:
            for step in session.steps:
                if step.status == StepStatus.PENDING:
                    step.status = StepStatus.SKIPPED
        session.touch()

    async def _finish(self, session: Session, status: SessionStatus, error: str = "") -> None:
        self._set_status(session, status, error)
        await self.store.save(session)

    async def _stop(self, sessions_tasks: dict[str, asyncio.Task[None]], status: SessionStatus) -> None:
        """Cancel runs and wait until each has recorded why it stopped."""
        for session_id, task in sessions_tasks.items():
            self._stop_reasons[session_id] = status
            task.cancel()
        await asyncio.wait(set(sessions_tasks.values()))
        for session_id, task in sessions_tasks.items():
            self._stop_reasons.pop(session_id, None)
            # A task cancelled before its first step never entered _run's handler; record it here.
            session = await self.store.get(session_id)
            if task.cancelled() and session is not None and session.status == SessionStatus.RUNNING:
                await self._record_stop(session, status)

    async def _run_step(self, session: Session, step: SessionStep) -> None:
        sink = StepSink(self, session, step)
        if step.status != StepStatus.PENDING:
            # A stop cut this step short: clients drop what they have of it, and it runs again.
            await sink.restart(RESTARTED)
        step.status = StepStatus.RUNNING
        step.started_at = utcnow()
        step.error = ""
        session.touch()
        index = [s.id for s in session.steps].index(step.id)
        start: dict[str, Any] = {"step_name": step.name, "step_index": index}
        await self.publish(session, ev.STEP_START, start, step.id, save=True)
        context = StepContext(
            session.topic, self.provider, self.images, sink, session.checkpoints, self._image_saver(session)
        )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.options.retries + 1),
            wait=self._retry_delay,
            retry=retry_if_exception(lambda exc: isinstance(exc, ProviderError) and exc.transient),
            before_sleep=functools.partial(self._announce_retry, sink),
            reraise=True,
        )
        began = time.monotonic_ns()
        try:
            async with asyncio.timeout(self.options.step_timeout) as deadline:
                async for attempt in retrying:
                    with attempt:
                        outcome = await STEPS[step.name](context)
        except asyncio.CancelledError:
            reason = self._stop_reasons.get(session.id, SessionStatus.CANCELLED)
            self._end_step(step, began, StepStatus.FAILED, error=reason.value)
            raise
        except StoreUnavailable:
            raise
        except Exception as exc:
            failure = self._as_step_failure(step, exc, deadline.expired())
            self._end_step(step, began, StepStatus.FAILED, error=str(failure))
            data = {"step_name": step.name, "error": str(failure)}
            await self.publish(session, ev.STEP_ERROR, data, step.id, save=True)
            if step.name in self.options.optional_steps and not isinstance(failure, BudgetExceeded):
                log.warning("optional step %s failed; the lesson goes on without it: %s", step.name, failure)
                return
            raise failure from exc
        session.checkpoints[step.name] = outcome.checkpoint
        self._end_step(step, began, StepStatus.COMPLETED, output=outcome.output)
        session.touch()
        milliseconds = (step.duration_ns or 0) // 1_000_000
        done: dict[str, Any] = {"step_name": step.name, "output": outcome.output, "duration": milliseconds}
        if "usage" in step.metadata:
            done["usage"] = step.metadata["usage"]
        await self.publish(session, ev.STEP_COMPLETE, done, step.id, save=True)

    def _retry_delay(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, or exactly what the server asked for in Retry-After."""
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, ProviderError) and failure.retry_after is not None:
            return max(0.0, failure.retry_after)
        initial = self.options.retry_initial_delay
        return wait_exponential_jitter(multiplier=initial, max=self.options.retry_max_delay, jitter=initial)(
            state
        )

    async def _announce_retry(self, sink: StepSink, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        delay = round(state.upcoming_sleep, 3)
        log.warning("retrying in %g s (attempt %d): %s", delay, state.attempt_number + 1, failure)
        await sink.restart(str(failure), attempt=state.attempt_number + 1, delay=delay)

    def _as_step_failure(self, step: SessionStep, exc: Exception, timed_out: bool) -> StepFailed:
        if timed_out:
            return StepTimedOut(step.name, f"{step.name} timed out after {self.options.step_timeout:g} s")
        if isinstance(exc, StepFailed):
            return exc
        if isinstance(exc, ProviderError):
            return StepFailed(step.name, f"{step.name} failed: {exc}")
        log.warning("step %s failed: %s", step.name, exc, exc_info=exc)
        return StepFailed(step.name, f"{step.name} failed: {exc}")

    @staticmethod
    def _end_step(
        step: SessionStep, began: int, status: StepStatus, output: str = "", error: str = ""
    ) -> None:
        step.status = status
        step.completed_at = utcnow()
        step.duration_ns = time.monotonic_ns() - began
        step.output = output
        step.error = error

    def _image_saver(self, session: Session) -> Callable[[str, str, bytes], Any]:
        async def save(name: str, content_type: str, data: bytes) -> str:
            await self.store.put_image(session.id, name, StoredImage(content_type, data))
            return self.options.image_url.format(session_id=session.id, name=name)

        return save

    async def cancel(self, session_id: str) -> Session:
        session = await self.get_session(session_id)
        session = self._live.get(session_id, session)  # it may have started while we read it
        if session.status.finished:
            raise SessionConflict(f"session {session_id} already ended ({session.status.value})")
        task = self._tasks.get(session_id)
        if task is not None:
            # Wait for the run to record the cancellation, so the answer shows the final state.
            await self._stop({session_id: task}, SessionStatus.CANCELLED)
        else:
            await self._record_stop(session, SessionStatus.CANCELLED)
        return session

    async def delete(self, session_id: str) -> None:
        session = await self.get_session(session_id)
        if session_id in self._tasks:
            await self.cancel(session_id)
        self._close_subscriptions(session_id, DELETED)
        await self.store.delete(session_id)
        self._count = None
        log.info(
            "session %s deleted (it was %s)",
            session_id,
            session.status.value,
            extra={"session_id": session_id},
        )

    async def prune(self, room_for: int = 0) -> int:
        """Delete finished sessions past their retention, and the oldest beyond max_sessions
        (less `room_for`, to make room for new ones)."""
        cutoff = utcnow() - timedelta(seconds=self.options.retention)
        deleted = await self.store.prune(cutoff, self.options.max_sessions - room_for)
        self._count = None
        for session_id in deleted:
            self._close_subscriptions(session_id, DELETED)
        if deleted:
            log.info("pruned %d finished sessions", len(deleted))
        return len(deleted)

    # -- events -------------------------------------------------------------------------------

    async def publish(
        self,
        session: Session,
        event_type: str,
        data: dict[str, Any],
        step_id: str | None = None,
        *,
        save: bool = False,
        wait: bool = False,
    ) -> Event:
        """Give the event the session's next id and queue it (with the session, if `save`) for the store.

        Subscribers are offered it only once it is committed, so nobody ever holds an event the
        store does not have. The run does not wait for the commit (writes are committed in order,
        so what a crash leaves is always a prefix of the log) unless `wait` is set, or the session
        already has MAX_UNCOMMITTED events waiting for the store.
        """
        failure = self._write_failures.get(session.id)
        if failure is not None:
            raise failure
        session.last_event_id += 1
        event = make_event(session.last_event_id, event_type, session.id, data, step_id)
        committed = self.store.append_events(session.id, [event], session if save else None)
        uncommitted = self._uncommitted.get(session.id, 0) + 1
        self._uncommitted[session.id] = uncommitted
        committed.add_done_callback(functools.partial(self._deliver, session.id, event))
        if wait or uncommitted > MAX_UNCOMMITTED:
            await committed
        return event

    def _deliver(self, session_id: str, event: Event, committed: asyncio.Future[None]) -> None:
        """Offer a committed event to the session's subscribers, in commit order."""
        left = self._uncommitted.pop(session_id, 1) - 1
        if left:
            self._uncommitted[session_id] = left
        failure = None if committed.cancelled() else committed.exception()
        if failure is not None:
            if session_id not in self._write_failures:
                log.error("session %s: event %s was not stored: %s", session_id, event.id, failure)
                self._write_failures[session_id] = failure
            self._close_subscriptions(session_id, STORE_DOWN)
            return
        subscribers = self._subscribers.get(session_id)
        if subscribers:
            for subscription in list(subscribers):
                subscription.offer(event)
                if subscription.closed:
                    subscribers.discard(subscription)

    async def subscribe(
        self, session_id: str, after_id: int = 0, *, start: bool = False, must_start: bool = False
    ) -> Subscription | None:
        """A subscription to the session's events after `after_id`, or None if there is nothing left to send.

        With `start`, a pending session is started once the subscription is in place, so not
        even its first event can be missed; with `must_start`, one that is not pending is a conflict.
        A session that is not running (finished, or interrupted and not resumed) replays its log
        and the subscription ends there.
        """
        session = await self.get_session(session_id)
        if after_id < 0:
            raise InvalidInput("Last-Event-ID must be a non-negative integer")
        if must_start:
            self._check_pending(session)
        will_run = session_id in self._live or (start and session.status == SessionStatus.PENDING)
        if not will_run and after_id >= session.last_event_id:
            return None
        subscription = Subscription(session_id, self.options.subscriber_buffer, after_id)
        self._subscribers.setdefault(session_id, set()).add(subscription)
        try:
            subscription.prime(await self.store.events_after(session_id, after_id))
            if start and session_id not in self._live:
                await self._start_unless_started(session_id, must_start)
            if session_id not in self._live:
                subscription.close(IDLE)
        except BaseException:
            self.unsubscribe(subscription)
            raise
        return subscription

    async def _start_unless_started(self, session_id: str, must_start: bool) -> None:
        try:
            await self.start(session_id)
        except SessionConflict:
            # Another reader started it a moment ago, or it has ended: attach to what there is.
            if must_start:
                raise

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        subscribers = self._subscribers.get(subscription.session_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.session_id]

    def _close_subscriptions(self, session_id: str, reason: str) -> None:
        for subscription in self._subscribers.pop(session_id, set()):
            subscription.close(reason)

    def sweep(self) -> int:
        """Drop subscriptions whose reader has gone; returns how many. Run periodically."""
        removed = 0
        for subscription in [s for subs in self._subscribers.values() for s in subs]:
            if subscription.closed or not subscription.reader_alive():
                self.unsubscribe(subscription)
                removed += 1
        if removed:
            log.info("swept %d closed subscriptions", removed)
        return removed

    # -- shutdown -----------------------------------------------------------------------------

    async def close_providers(self) -> None:
        # Both may share one client; closing a closed client is harmless.
        await self.provider.close()
        await self.images.close()

    async def shutdown(self, timeout: float) -> None:
        """Stop taking work, let running sessions finish for up to `timeout` s, then interrupt the rest."""
        self.accepting = False
        running = set(self._tasks.values())
        if running:
            log.info("waiting up to %g s for %d running sessions", timeout, len(running))
            await asyncio.wait(running, timeout=timeout)
        leftover = dict(self._tasks)
        if leftover:
            await self._stop(leftover, SessionStatus.INTERRUPTED)
            log.warning("interrupted %d sessions that were still running", len(leftover))
        for session_id in list(self._subscribers):
            self._close_subscriptions(session_id, SHUTDOWN)
