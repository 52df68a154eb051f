"""Runs a session's five steps in order, each under its timeout. Model calls retry themselves (through the
step's sink); a transient failure that escapes a step some other way retries the step."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from core import events as ev
from core import metrics
from core.errors import (
    BudgetExceeded,
    ProviderError,
    SessionNotFound,
    StepFailed,
    StepTimedOut,
    StoreUnavailable,
)
from core.models import SessionResult, SessionStep, StepStatus, utcnow
from workflow.engine.options import EngineOptions
from workflow.providers.base import LessonProvider
from workflow.providers.images import ImageProvider
from workflow.steps.pipeline import STEPS, StepContext
from workflow.steps.sink import StepSink

if TYPE_CHECKING:  # the Run drives this pipeline; only its type is needed here
    from workflow.engine.run import Run

log = logging.getLogger("orchestrator.engine")

RESTARTED = "the service stopped while this step ran; its partial output is void"
# (session id, image name, content type, bytes) -> the URL it is served at
SaveImage = Callable[[str, str, str, bytes], Awaitable[str]]


class Pipeline:
    def __init__(
        self, provider: LessonProvider, images: ImageProvider, options: EngineOptions, save_image: SaveImage
    ) -> None:
        self.provider, self.images, self.options = provider, images, options
        self._save_image = save_image

    async def run(self, run: Run) -> SessionResult:
        """Run every step not yet completed (a resumed session skips what it had done); the lesson."""
        session = run.session
        for step in session.steps:
            if step.status != StepStatus.COMPLETED:
                await self._run_step(run, step)
        final = session.checkpoints["finalize-lesson"]
        usage = session.metadata.get("usage")
        return SessionResult(
            lesson=final["lesson"],
            images=final["images"],
            summary=final["summary"],
            duration_ns=time.time_ns() - session.run_started_ns,
            completed_at=utcnow(),
            partial=any(s.status == StepStatus.FAILED for s in session.steps),
            # Who wrote it, with the lesson: the built-in templates write a scaffold without facts.
            metadata={
                "provider": self.provider.name,
                "model": self.provider.model,
                **({"usage": usage} if usage else {}),
            },
        )

    async def _run_step(self, run: Run, step: SessionStep) -> None:
        session = run.session
        provider = self.provider.name
        options = self.options
        sink = StepSink(
            run.publish, run.publish_many, session, step, options.usage, options.retry, provider=provider
        )
        if step.status != StepStatus.PENDING:
            # A stop cut this step short: clients drop what they have of it, and it runs again.
            await sink.restart(RESTARTED)
        step.status = StepStatus.RUNNING
        step.started_at = utcnow()
        step.error = ""
        session.touch()
        index = [s.id for s in session.steps].index(step.id)
        start: dict[str, Any] = {"step_name": step.name, "step_index": index}
        await run.publish(ev.STEP_START, start, step.id, save=True)
        save_image = functools.partial(self._save_image, session.id)
        context = StepContext(
            session.topic, self.provider, self.images, sink, session.checkpoints, save_image
        )
        began = time.monotonic_ns()
        try:
            async with asyncio.timeout(self.options.step_timeout) as deadline:
                outcome = await sink.retry(functools.partial(STEPS[step.name], context))
        except asyncio.CancelledError:
            _end_step(step, began, StepStatus.FAILED, error=run.stop_reason.value)
            _observe(step, provider, "stopped")
            raise
        except (StoreUnavailable, SessionNotFound):
            raise  # not the step's failure: the run cannot record anything more
        except Exception as exc:
            failure = self._as_step_failure(step, exc, deadline.expired(), sink.activity())
            _end_step(step, began, StepStatus.FAILED, error=str(failure))
            _observe(step, provider, "failed")
            metrics.STEP_ERRORS.labels(step.name, provider, _error_reason(exc, failure)).inc()
            data = {"step_name": step.name, "error": str(failure)}
            await run.publish(ev.STEP_ERROR, data, step.id, save=True)
            if step.name in self.options.optional_steps and not isinstance(failure, BudgetExceeded):
                log.warning("optional step %s failed; the lesson goes on without it: %s", step.name, failure)
                return
            raise failure from exc
        session.checkpoints[step.name] = outcome.checkpoint
        _end_step(step, began, StepStatus.COMPLETED, output=outcome.output)
        _observe(step, provider, "completed")
        session.touch()
        milliseconds = (step.duration_ns or 0) // 1_000_000
        done: dict[str, Any] = {
            "step_name": step.name,
            "output": outcome.output,
            "duration": milliseconds,
            "progress": 100,
        }
        if "usage" in step.metadata:
            done["usage"] = step.metadata["usage"]
        # Saved with what comes next at once: the next step's start, or the run's end.
        await run.publish(ev.STEP_COMPLETE, done, step.id, save=True, then=True)

    def _as_step_failure(self, step: SessionStep, exc: Exception, timed_out: bool, doing: str) -> StepFailed:
        if timed_out:
            during = f" {doing}" if doing else ""
            return StepTimedOut(
                step.name, f"{step.name} timed out after {self.options.step_timeout:g} s{during}"
            )
        if isinstance(exc, StepFailed):
            return exc
        if isinstance(exc, ProviderError):
            return StepFailed(step.name, f"{step.name} failed: {exc}")
        log.warning("step %s failed: %s", step.name, exc, exc_info=exc)
        return StepFailed(step.name, f"{step.name} failed: {exc}")


def _observe(step: SessionStep, provider: str, outcome: str) -> None:
    metrics.STEP_DURATION.labels(step.name, provider, outcome).observe((step.duration_ns or 0) / 1e9)


def _error_reason(exc: Exception, failure: StepFailed) -> str:
    """Why a step failed, as the step-errors metric says it: a small fixed set."""
    if isinstance(failure, StepTimedOut):
        return "timeout"
    if isinstance(failure, BudgetExceeded):
        return "budget"
    if isinstance(exc, ProviderError):
        return "provider"
    return "error"


def _end_step(step: SessionStep, began: int, status: StepStatus, output: str = "", error: str = "") -> None:
    step.status = status
    step.completed_at = utcnow()
    step.duration_ns = time.monotonic_ns() - began
    step.output = output
    step.error = error
