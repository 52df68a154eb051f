"""When a failed call to a provider is tried again: transient ProviderErrors only, with backoff and jitter
or exactly the wait the server asked for (Retry-After), each retry announced before its wait."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core.errors import ProviderError

T = TypeVar("T")
# (the failure, the attempt about to start, the seconds before it) -> None, awaited before the wait
Announce = Callable[[BaseException | None, int, float], Awaitable[None]]


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.transient


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    retries: int  # after the first attempt
    initial_delay: float  # seconds; doubles each time, with jitter of the same size
    max_delay: float

    async def call(self, attempt: Callable[[], Awaitable[T]], announce: Announce) -> T:
        """Run `attempt` until it succeeds, fails for good, or the retries are spent. A transient
        failure that outlasts them is re-raised as final, so an outer policy does not repeat it."""

        try:
            # The first attempt on its own: nearly every call succeeds at once, and the retrying
            # machinery costs more to set up than a built-in step's whole text.
            return await attempt()
        except ProviderError as exc:
            if not exc.transient:
                raise
            if not self.retries:
                raise self._gave_up(exc) from exc
            first_failure = exc
        tried_once = False

        async def again() -> T:
            # Attempt 1 as it went (its failure, again), then the attempts after it.
            nonlocal tried_once
            if not tried_once:
                tried_once = True
                raise first_failure
            return await attempt()

        async def before_sleep(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            await announce(failure, state.attempt_number + 1, round(state.upcoming_sleep, 3))

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=self._delay,
            retry=retry_if_exception(_is_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return await retrying(again)
        except ProviderError as exc:
            if not exc.transient:
                raise
            raise self._gave_up(exc) from exc

    def _gave_up(self, exc: ProviderError) -> ProviderError:
        """A transient failure that outlasted the retries, as final (an outer policy must not repeat it)."""
        gave_up = f" (gave up after {self.retries + 1} attempts)" if self.retries else ""
        return ProviderError(f"{exc}{gave_up}")

    def _delay(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, ProviderError) and failure.retry_after is not None:
            return max(0.0, failure.retry_after)
        backoff: Any = wait_exponential_jitter(
            multiplier=self.initial_delay, max=self.max_delay, jitter=self.initial_delay
        )
        return float(backoff(state))
