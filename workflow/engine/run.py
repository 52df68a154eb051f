"""Run: the one owner of a running session: its task, its stop reason, its writes, and its outcome."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import events as ev
from core.context import session_id_var
from core.errors import RunTakenOver, SessionNotFound, StepFailed, StoreUnavailable
from core.events import Event, make_event
from core.models import Session, SessionStatus, StepStatus, StopReason, now_rfc3339
from core.store import Delivery, SessionStore
from workflow.engine.pipeline import Pipeline
from workflow.eventlog import CloseReason, EventLog

log = logging.getLogger("orchestrator.engine")

SHUTDOWN = "the server is shutting down"
# (events, the session's state to save with them or None, their webhook messages or None for the
# engine to make) -> their commit: the engine's
Append = Callable[[Sequence[Event], Session | None, Sequence[Delivery] | None], "asyncio.Future[None]"]
# (events, the session as it is) -> the webhook messages they cause: the engine's
Outbox = Callable[[Sequence[Event], Session], Sequence[Delivery]]
# A run with more uncommitted events than this waits for its latest commit before going on. It
# bounds how far a run gets ahead of its store, and so the burst its readers are offered at once.
MAX_UNCOMMITTED = 32


@dataclass(frozen=True)
class Outcome:
    """How a run ended, as it is recorded: the session's status, and the terminal event if any."""

    status: SessionStatus
    error: str = ""
    event_type: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    close: CloseReason = CloseReason.ENDED


CANCELLED = Outcome(
    SessionStatus.CANCELLED,
    "cancelled",
    ev.ERROR,
    {"status": "cancelled", "error": "the session was cancelled"},
)
INTERRUPTED = Outcome(SessionStatus.INTERRUPTED, SHUTDOWN, close=CloseReason.SHUTDOWN)


class Run:
    """Owns one running session from its start until its outcome is recorded.

    Everything that happens to the session while it runs goes through here: its events get their
    ids in `publish`; a stop says why (`stop_reason`, `interrupted` unless a caller says otherwise);
    and `_decide` is the one place, one try/except, where the outcome is decided, then recorded
    once. Every stream of the session is ended when that is done, whatever position it asked for.
    """

    def __init__(
        self,
        session: Session,
        log: EventLog,
        store: SessionStore,
        pipeline: Pipeline,
        append: Append,
        outbox: Outbox,
    ) -> None:
        self.session = session
        self.stop_reason = StopReason.INTERRUPTED
        self.record_error: StoreUnavailable | None = None  # the outcome could not be stored
        self.stored_finished = False  # it ended, and that is stored: the session changes no more
        self._log, self._store, self._pipeline, self._append = log, store, pipeline, append
        self._outbox = outbox
        # Published with `then`: appended with the next event, and their webhook messages
        self._following: list[Event] = []
        self._following_outbox: list[Delivery] = []
        # The appends not yet answered, oldest first, each with its number of events. Looked at as
        # the next one is made, not each told with a callback: appends are answered in order.
        self._unanswered: deque[tuple[asyncio.Future[None], int]] = deque()
        self._uncommitted = 0  # the events in them
        self._write_failure: BaseException | None = None  # once a write failed, nothing more is sent
        self._started = False
        self._stop_requested = False
        self._recording = False
        self.task = asyncio.get_running_loop().create_task(self._main(), name=f"session-{session.id}")

    async def stop(self, reason: StopReason) -> None:
        """Stop the run for `reason` and wait until it has recorded how it ended.

        A run already recording its outcome (it completed or failed a moment ago) is not
        interrupted: the caller finds that outcome in `session.status`.
        """
        if not self._recording and not self._stop_requested:
            self._stop_requested = True
            self.stop_reason = reason
            if self._started:
                self.task.cancel()
            # Not started yet: a task cancelled before its first step would never reach the
            # handler that records the stop, so _main sees the request instead.
        await asyncio.wait({self.task})

    async def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        step_id: str | None = None,
        *,
        save: bool = False,
        wait: bool = False,
        then: bool = False,
    ) -> Event:
        """Give the event the session's next id and append it (with the session's state, if `save`).

        The run does not wait for the commit (appends commit in order, so what a crash leaves is
        always a prefix of the log) unless `wait` is set, or MAX_UNCOMMITTED events are waiting.

        With `then` (and `save`), the caller publishes another event at once, before it next waits
        for anything (a step's end is followed by the next step's start, or by the run's end): this
        one goes with that one, in its append, and the session is saved once for both. Its webhook
        messages are made now, from the session as it is now.
        """
        self._check_writes()
        self.session.last_event_id += 1
        event = make_event(self.session.last_event_id, event_type, self.session.id, data, step_id)
        if then:
            self._following.append(event)
            self._following_outbox += self._outbox((event,), self.session)
            return event
        await self._send([event], save, wait)
        return event

    async def publish_many(self, event_type: str, data: Sequence[dict[str, Any]], step_id: str) -> None:
        """`publish` for several events of one type at once, each with its own id, in one append:
        one commit, one hand-over to the session's readers, one write to each stream."""
        self._check_writes()
        session = self.session
        first, timestamp = session.last_event_id + 1, now_rfc3339()
        events = [
            make_event(first + n, event_type, session.id, each, step_id, timestamp)
            for n, each in enumerate(data)
        ]
        session.last_event_id += len(events)
        await self._send(events, False, False)

    async def _send(self, events: list[Event], save: bool, wait: bool) -> None:
        """Append `events`, after any published with `then`, and with the session's state if asked
        for or if those were (they were to be saved)."""
        outbox: Sequence[Delivery] | None = None  # the engine's: what the events cause, if saved
        if self._following:
            ahead = self._following_outbox
            outbox = [*ahead, *self._outbox(events, self.session)] if save else ahead
            events = [*self._following, *events]
            self._following, self._following_outbox, save = [], [], True
        committed = self._append(events, self.session if save else None, outbox)
        self._unanswered.append((committed, len(events)))
        self._uncommitted += len(events)
        if wait or self._uncommitted > MAX_UNCOMMITTED:
            # Shielded: a stop cancels this task while it waits, and that must not cancel the
            # commit's own future, which the event log reads as the commit's outcome.
            await asyncio.shield(committed)

    def _check_writes(self) -> None:
        """Before an append: let go of what was answered; once a write failed, nothing more is sent."""
        unanswered = self._unanswered
        while unanswered and unanswered[0][0].done():
            committed, count = unanswered.popleft()
            self._uncommitted -= count
            failure = None if committed.cancelled() else committed.exception()
            if failure is not None and self._write_failure is None:
                self._write_failure = failure
                if not isinstance(failure, SessionNotFound):
                    log.error("session %s: an event was not stored: %s", self.session.id, failure)
        if self._write_failure is not None:
            raise self._write_failure

    async def _main(self) -> None:
        self._started = True
        session_id_var.set(self.session.id)
        log.info("session %s running", self.session.id)
        outcome = await self._decide()
        self._recording = True
        await self._record(outcome)
        log.info("session %s %s", self.session.id, self.session.status.value)

    async def _decide(self) -> Outcome | CloseReason:
        """Run the pipeline and say how it ended: an Outcome to record, or why nothing can be."""
        try:
            if self._stop_requested:
                raise asyncio.CancelledError
            result = await self._pipeline.run(self)
        except asyncio.CancelledError:
            if self.stop_reason == StopReason.DELETED:
                return CloseReason.DELETED
            if self.stop_reason == StopReason.MOVED:
                return CloseReason.MOVED
            return CANCELLED if self.stop_reason == StopReason.CANCELLED else INTERRUPTED
        except StepFailed as exc:
            data = {"status": "failed", "error": str(exc), "step": exc.step}
            return Outcome(SessionStatus.FAILED, f"{exc.step}: {exc}", ev.ERROR, data)
        except SessionNotFound:
            return CloseReason.DELETED
        except RunTakenOver:
            # Paused or cut off past the lease: another instance runs the session now, from its
            # checkpoint; the fence refused this instance's writes, so nothing here is recorded.
            log.warning("session %s: another instance took the run over", self.session.id)
            return CloseReason.MOVED
        except StoreUnavailable as exc:
            # Nothing more can be kept, so nothing more is sent; a restart resumes from the store.
            log.error("session %s stopped: %s", self.session.id, exc)
            self.record_error = exc
            return CloseReason.STORE_DOWN
        except Exception as exc:
            log.exception("session %s failed unexpectedly", self.session.id)
            data = {"status": "failed", "error": "internal error"}
            return Outcome(SessionStatus.FAILED, f"internal error: {exc}", ev.ERROR, data)
        self.session.result = result
        return Outcome(SessionStatus.COMPLETED, "", ev.FINAL, {"result": result.to_json()})

    async def _record(self, outcome: Outcome | CloseReason) -> None:
        close = outcome if isinstance(outcome, CloseReason) else outcome.close
        try:
            if isinstance(outcome, Outcome):
                set_status(self.session, outcome.status, outcome.error)
                if outcome.event_type is None and self._following:
                    await self._send([], True, True)  # they were to be saved, and are, with the outcome
                elif outcome.event_type is None:
                    await self._store.update(self.session)
                else:
                    await self.publish(outcome.event_type, outcome.data, save=True, wait=True)
                self.stored_finished = self.session.status.finished
        except RunTakenOver:
            close = CloseReason.MOVED  # the new owner records how it ends
        except StoreUnavailable as exc:
            self.record_error = exc
            status = self.session.status.value
            log.error("session %s: could not record that it is %s: %s", self.session.id, status, exc)
            close = CloseReason.STORE_DOWN
        except SessionNotFound:
            close = CloseReason.DELETED
        finally:
            self._log.close_session(self.session.id, close)


def set_status(session: Session, status: SessionStatus, error: str = "") -> None:
    """Change a session's status; a finished one has its steps that never ran marked skipped."""
    session.status = status
    if error:
        session.metadata["error"] = error
    if status.finished:
        for step in session.steps:
            if step.status == StepStatus.PENDING:
                step.status = StepStatus.SKIPPED
    session.touch()
