"""StepSink: a step's writes become step-delta events with rising progress; its token usage is kept."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core import events as ev
from core.errors import BudgetExceeded
from core.events import Event
from core.models import Session, SessionStep

# (event type, data, step id) -> the event, once it has its id and is on its way to the log
Publish = Callable[[str, dict[str, Any], str], Awaitable[Event]]


@dataclass(frozen=True, kw_only=True)
class UsagePolicy:
    """What a session may spend on a model, and what its tokens cost."""

    token_budget: int  # per session; 0 = none
    prompt_price: float  # per million tokens; 0 = no cost figure
    completion_price: float


class StepSink:
    """Turns a provider's writes into `step-delta` events with a rising progress figure."""

    def __init__(self, publish: Publish, session: Session, step: SessionStep, usage: UsagePolicy) -> None:
        self._publish, self._session, self._step, self._usage = publish, session, step, usage
        self._expected = 0
        self._written = 0
        self._progress = 0

    def expect(self, total: int) -> None:
        self._expected = max(total, 1)

    async def write(self, text: str, weight: int | None = None) -> None:
        if not text:
            return
        self._written += len(text) if weight is None else weight
        if self._expected:
            # Never above 100, never going back, even if the provider underestimated.
            self._progress = max(self._progress, min(100, self._written * 100 // self._expected))
        data = {"delta": text, "progress": self._progress}
        await self._publish(ev.STEP_DELTA, data, self._step.id)

    async def restart(self, reason: str, **details: Any) -> None:
        self._written = self._progress = 0
        data = {"step_name": self._step.name, "reason": reason, **details}
        await self._publish(ev.STEP_RETRY, data, self._step.id)

    def record_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        options = self._usage
        for holder in (self._step.metadata, self._session.metadata):
            add_usage(
                holder, prompt_tokens, completion_tokens, options.prompt_price, options.completion_price
            )
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
