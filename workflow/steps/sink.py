"""StepSink: a step's writes become step-delta events with rising progress; its retries, usage and
warnings are kept, and it can say what the step was doing when it ran out of time."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from core import events as ev
from core import metrics
from core.errors import BudgetExceeded
from core.events import Event
from core.models import Session, SessionStep
from workflow.steps.retry import RetryPolicy

log = logging.getLogger("orchestrator.engine")
T = TypeVar("T")

# (event type, data, step id) -> the event, once it has its id and is on its way to the log
Publish = Callable[[str, dict[str, Any], str], Awaitable[Event]]
# (event type, each event's data, step id): several events at once, in one append
PublishMany = Callable[[str, Sequence[dict[str, Any]], str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class UsagePolicy:
    """What a session may spend on a model, and what its tokens cost."""

    token_budget: int  # per session; 0 = none
    prompt_price: float  # per million tokens; 0 = no cost figure
    completion_price: float


class StepSink:
    """Turns a provider's writes into `step-delta` events with a rising progress figure.

    What the step wrote up to its last `keep()` survives a retry: after the `step-retry` that tells
    clients to drop the step's text, it is sent again as one delta (never replayed piece by piece,
    which would flood every live stream at once).
    """

    def __init__(
        self,
        publish: Publish,
        publish_many: PublishMany,
        session: Session,
        step: SessionStep,
        usage: UsagePolicy,
        retry: RetryPolicy,
        *,
        provider: str = "",
    ) -> None:
        self._publish, self._publish_many = publish, publish_many
        self._session, self._step = session, step
        self._usage, self._retry = usage, retry
        self._provider = provider  # the provider's name, for the metrics
        self._expected = 0
        self._written = self._progress = 0
        self._kept: list[str] = []
        self._current: list[str] = []
        self._kept_written = self._kept_progress = 0
        self._doing = ""
        self._doing_since = self._last_write = 0.0

    def expect(self, total: int) -> None:
        self._expected = max(total, 1)

    async def write(self, text: str, weight: int | None = None) -> None:
        if text:
            await self._publish(ev.STEP_DELTA, self._delta(text, weight), self._step.id)

    async def write_many(self, texts: Sequence[str]) -> None:
        """Several pieces in a row, each its own `step-delta` as from `write`, appended together."""
        deltas = [self._delta(text, None) for text in texts if text]
        if deltas:
            await self._publish_many(ev.STEP_DELTA, deltas, self._step.id)

    def _delta(self, text: str, weight: int | None) -> dict[str, Any]:
        """Count a piece written; the data of its `step-delta`."""
        self._current.append(text)
        self._last_write = time.monotonic()
        self._written += len(text) if weight is None else weight
        if self._expected:
            # Never above 100, never going back, even if the provider underestimated.
            self._progress = max(self._progress, min(100, self._written * 100 // self._expected))
        return {"delta": text, "progress": self._progress}

    def keep(self) -> None:
        self._kept += self._current
        self._current = []
        self._kept_written, self._kept_progress = self._written, self._progress

    async def restart(self, reason: str, **details: Any) -> None:
        self._current = []
        self._written, self._progress = self._kept_written, self._kept_progress
        data = {"step_name": self._step.name, "reason": reason, **details}
        await self._publish(ev.STEP_RETRY, data, self._step.id)
        if self._kept:
            self._kept = ["".join(self._kept)]
            kept = {"delta": self._kept[0], "progress": self._progress}
            await self._publish(ev.STEP_DELTA, kept, self._step.id)

    async def retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        return await self._retry.call(attempt, self._announce_retry)

    async def _announce_retry(self, failure: BaseException | None, attempt: int, delay: float) -> None:
        log.warning("%s: retrying in %g s (attempt %d): %s", self._step.name, delay, attempt, failure)
        metrics.MODEL_RETRIES.labels(self._provider, self._step.name).inc()
        await self.restart(str(failure), attempt=attempt, delay=delay)

    def doing(self, what: str) -> None:
        self._doing, self._doing_since, self._last_write = what, time.monotonic(), 0.0

    def activity(self) -> str:
        """What the step was doing, as the end of a sentence: "during section 2 of 5: waited 74 s for
        the first token"; empty if the provider never said."""
        if not self._doing:
            return ""
        now = time.monotonic()
        if self._last_write < self._doing_since:
            return f"during {self._doing}: waited {now - self._doing_since:.1f} s for the first token"
        return f"during {self._doing}: the last token came {now - self._last_write:.1f} s before"

    def warn(self, message: str) -> None:
        log.warning("%s: %s", self._step.name, message)
        self._step.metadata.setdefault("warnings", []).append(message)

    def record_usage(self, prompt_tokens: int, completion_tokens: int, estimated: bool = False) -> None:
        options = self._usage
        prompt, completion = max(0, prompt_tokens), max(0, completion_tokens)  # a counter only goes up
        metrics.MODEL_TOKENS.labels(self._provider, "prompt").inc(prompt)
        metrics.MODEL_TOKENS.labels(self._provider, "completion").inc(completion)
        cost = prompt * options.prompt_price + completion * options.completion_price
        metrics.MODEL_COST.labels(self._provider).inc(cost / 1e6)
        for holder in (self._step.metadata, self._session.metadata):
            add_usage(
                holder, prompt_tokens, completion_tokens, options.prompt_price, options.completion_price
            )
            if estimated:
                holder["usage"]["estimated"] = True
        used = self._session.metadata["usage"]["total_tokens"]
        if options.token_budget and used > options.token_budget:
            raise BudgetExceeded(
                self._step.name,
                f"the session used {used} tokens, over its budget of {options.token_budget}; "
                "raise token_budget to allow longer lessons",
            )

    def token_allowance(self) -> int | None:
        budget = self._usage.token_budget
        if not budget:
            return None
        left = budget - self._session.metadata.get("usage", {}).get("total_tokens", 0)
        if left <= 0:
            raise BudgetExceeded(self._step.name, f"the session's token budget of {budget} is spent")
        return left


def add_usage(
    holder: dict[str, Any], prompt: int, completion: int, prompt_price: float, completion_price: float
) -> None:
    """Add a call's tokens (and their cost, when prices are set) to `holder["usage"]`."""
    usage = holder.setdefault("usage", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    usage["prompt_tokens"] += prompt
    usage["completion_tokens"] += completion
    usage["total_tokens"] += prompt + completion
    if prompt_price or completion_price:
        cost = (usage["prompt_tokens"] * prompt_price + usage["completion_tokens"] * completion_price) / 1e6
        usage["cost"] = round(cost, 6)
