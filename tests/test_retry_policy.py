"""The retry policy of model calls alone: which failures are tried again, how often, what is announced."""

from __future__ import annotations

import pytest

from core.errors import ProviderError
from workflow.steps.retry import RetryPolicy

POLICY = RetryPolicy(retries=2, initial_delay=0.001, max_delay=0.002)


class Script:
    """An attempt that fails as scripted (one entry per call: an exception, or None to succeed)."""

    def __init__(self, *outcomes: ProviderError | None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.announced: list[tuple[str, int, float]] = []

    async def attempt(self) -> str:
        outcome = self.outcomes[self.calls]
        self.calls += 1
        if outcome is not None:
            raise outcome
        return f"answer {self.calls}"

    async def announce(self, failure: BaseException | None, attempt: int, delay: float) -> None:
        self.announced.append((str(failure), attempt, delay))


@pytest.mark.gen_test
async def test_a_first_attempt_that_succeeds_is_made_once_and_nothing_is_announced():
    script = Script(None)
    assert await POLICY.call(script.attempt, script.announce) == "answer 1"
    assert script.calls == 1 and script.announced == []


@pytest.mark.gen_test
async def test_a_transient_failure_is_announced_with_the_next_attempt_and_tried_again_once():
    script = Script(ProviderError("busy", transient=True, retry_after=0), None)
    assert await POLICY.call(script.attempt, script.announce) == "answer 2"
    assert script.calls == 2  # the first failure is not made again to be retried
    assert script.announced == [("busy", 2, 0.0)]


@pytest.mark.gen_test
async def test_a_lasting_failure_is_tried_as_often_as_allowed_then_given_up_as_final():
    busy = ProviderError("busy", transient=True, retry_after=0)
    script = Script(busy, busy, busy)
    with pytest.raises(ProviderError, match=r"busy \(gave up after 3 attempts\)") as raised:
        await POLICY.call(script.attempt, script.announce)
    assert not raised.value.transient  # an outer policy does not repeat it
    assert script.calls == 3 and [attempt for _, attempt, _ in script.announced] == [2, 3]


@pytest.mark.gen_test
async def test_a_failure_that_is_not_transient_is_raised_as_it_is_at_once():
    refused = ProviderError("bad request")
    for failure_at in (0, 1):  # on the first attempt, or on a retry
        outcomes = [ProviderError("busy", transient=True, retry_after=0)] * failure_at + [refused]
        script = Script(*outcomes)
        with pytest.raises(ProviderError) as raised:
            await POLICY.call(script.attempt, script.announce)
        assert raised.value is refused and script.calls == failure_at + 1


@pytest.mark.gen_test
async def test_with_no_retries_a_transient_failure_is_final_at_once():
    script = Script(ProviderError("busy", transient=True))
    with pytest.raises(ProviderError, match=r"^busy$") as raised:
        await RetryPolicy(retries=0, initial_delay=1, max_delay=1).call(script.attempt, script.announce)
    assert not raised.value.transient and script.calls == 1 and script.announced == []
