"""The engine without HTTP: sweeping dead readers, cancelling before a run begins, and draining."""

from __future__ import annotations

import asyncio
import copy

import pytest

from conf.settings import settings_for_tests
from core.events import Event
from core.models import Session, SessionStatus, StepStatus
from store import MemoryStore
from tests.providers import FloodProvider, GatedProvider
from tests.stores import BreakableStore
from workflow.engine import SHUTDOWN, Engine
from workflow.engine.run import MAX_UNCOMMITTED
from workflow.eventlog import CloseReason
from workflow.providers.builtin import BuiltinProvider
from workflow.providers.builtin.provider import BATCH_CHUNKS


def make_engine(provider=None) -> Engine:
    return Engine(MemoryStore(), provider or BuiltinProvider(), settings_for_tests().engine_options())


@pytest.mark.gen_test
async def test_the_sweep_drops_subscriptions_whose_reader_is_gone():
    gate = GatedProvider()
    engine = make_engine(gate)
    session = await engine.create_session("tides")
    alive = await engine.subscribe(session.id, start=True)
    gone = await engine.subscribe(session.id)
    gone.reader_alive = lambda: False
    assert engine.sweep() == 1
    assert gone.closed and not alive.closed
    assert (await engine.stats())["subscribers"] == 1
    gate.gate.set()
    await engine.shutdown(timeout=10)


@pytest.mark.gen_test
async def test_cancelling_a_run_before_its_first_step_still_records_it():
    engine = make_engine()
    session = await engine.create_session("tides")
    await engine.start(session.id)  # the task exists but has not run a single line yet
    cancelled = await engine.cancel(session.id)
    assert cancelled.status == SessionStatus.CANCELLED
    events = await engine.store.events_after(session.id, 0)
    assert [e.type for e in events] == ["error"]


@pytest.mark.gen_test
async def test_shutdown_interrupts_runs_that_outlast_the_timeout_and_ends_their_streams():
    gate = GatedProvider()
    engine = make_engine(gate)
    session = await engine.create_session("tides")
    subscription = await engine.subscribe(session.id, start=True)
    async with asyncio.timeout(10):
        await gate.reached.wait()
    await engine.shutdown(timeout=0.05)
    stored = await engine.get_session(session.id)
    assert stored.status == SessionStatus.INTERRUPTED
    assert stored.metadata["error"] == SHUTDOWN
    assert subscription.closed_reason == CloseReason.SHUTDOWN
    types = [e.type for e in await engine.store.events_after(session.id, 0)]
    assert "error" not in types and "final" not in types  # interrupted is a pause, not an end
    with pytest.raises(Exception, match="shutting down"):
        await engine.create_session("too late")


@pytest.mark.gen_test
async def test_shutdown_waits_for_runs_that_finish_in_time():
    engine = make_engine()
    session = await engine.create_session("tides")
    await engine.start(session.id)
    await engine.shutdown(timeout=30)
    assert (await engine.get_session(session.id)).status == SessionStatus.COMPLETED


@pytest.mark.gen_test(timeout=30)
async def test_a_run_cancelled_while_it_waits_for_its_commits_delivers_each_event_once_stored():
    # A run far enough ahead of its store waits for its latest commit; a cancel stops it there.
    # That wait's future was the store's own, so it was cancelled too, and the event log took a
    # cancelled commit for a done one: the event went to readers before it was stored, and the
    # events before it, stored after, were dropped as already seen.
    store = BreakableStore(MemoryStore())
    options = settings_for_tests().engine_options()
    engine = Engine(store, FloodProvider(chunks=200, size=10), options)
    session = await engine.create_session("tides")
    store.held = True
    subscription = await engine.subscribe(session.id, start=True)
    async with asyncio.timeout(10):
        # The run now waits for the latest of them (a few appends of many events, at pace 0).
        while sum(len(events) for _, events, *_ in store.waiting) <= MAX_UNCOMMITTED:
            await asyncio.sleep(0.01)
    held = len(store.waiting)
    cancelling = asyncio.create_task(engine.cancel(session.id))
    async with asyncio.timeout(10):
        while len(store.waiting) == held:  # the run's last event (its outcome) is now held too
            await asyncio.sleep(0.01)
    assert subscription.take() == []  # nothing stored, so nothing delivered
    await store.release()
    assert (await cancelling).status == SessionStatus.CANCELLED
    received: list[Event] = []
    async with asyncio.timeout(10):
        while not received or not received[-1].terminal:
            received += subscription.take()
            await subscription.ready()
    stored = await store.events_after(session.id, 0)
    assert [event.id for event in received] == [event.id for event in stored]
    assert received[-1].type == "error"


@pytest.mark.expect_errors("an event was not stored", "stopped")
@pytest.mark.gen_test(timeout=30)
async def test_a_run_whose_event_was_not_stored_sends_nothing_more_and_ends_its_streams():
    # The run does not wait for each commit; the first append the store refuses stops it all the
    # same, before its next event, and its readers are left with exactly what was stored.
    store = BreakableStore(MemoryStore())
    engine = Engine(store, FloodProvider(chunks=200, size=10), settings_for_tests().engine_options())
    session = await engine.create_session("tides")
    subscription = await engine.subscribe(session.id, start=True)
    received: list[Event] = []
    async with asyncio.timeout(10):
        while not any(event.type == "step-delta" for event in received):
            await subscription.ready()
            received += subscription.take()
    refused: list[list[Event]] = []  # the appends the store refused
    append = store.append_events

    def counted(session_id, events, state=None, outbox=()):
        refused.append(list(events))
        return append(session_id, events, state, outbox)

    store.broken, store.append_events = True, counted
    run = engine.runs[session.id]
    async with asyncio.timeout(10):
        await asyncio.wait({run.task})
        while not subscription.closed:
            received += subscription.take()
            await subscription.ready()
    received += subscription.take()
    assert subscription.closed_reason == CloseReason.STORE_DOWN
    assert len(refused) == 1  # the next append was never made
    assert isinstance(run.record_error, Exception) and not run.stored_finished
    stored = await store.events_after(session.id, 0)
    assert [event.id for event in received] == [event.id for event in stored]
    assert (await store.get(session.id)).status == SessionStatus.RUNNING  # a restart resumes it


async def _appends_of_one_run(
    pace: float, saved: list[tuple[list[Event], Session]] | None = None
) -> tuple[list[list[Event]], list[Event]]:
    """Run one lesson at `pace`: what the store was handed, append by append, and what a reader got;
    into `saved`, each append with the session's state, and that state (a copy)."""
    store = MemoryStore()
    appends: list[list[Event]] = []
    append = store.append_events

    def counted(session_id, events, state=None, outbox=()):
        appends.append(list(events))
        if state is not None and saved is not None:
            saved.append((list(events), copy.deepcopy(state)))
        return append(session_id, events, state, outbox)

    store.append_events = counted
    engine = Engine(store, BuiltinProvider(pace=pace), settings_for_tests().engine_options())
    session = await engine.create_session("tides")
    subscription = await engine.subscribe(session.id, start=True)
    received: list[Event] = []
    async with asyncio.timeout(20):
        while not received or not received[-1].terminal:
            await subscription.ready()
            received += subscription.take()
    await engine.shutdown(timeout=10)
    return appends, received


@pytest.mark.gen_test(timeout=30)
async def test_at_full_speed_a_steps_pieces_are_appended_together_and_each_stays_its_own_event():
    appends, received = await _appends_of_one_run(pace=0)
    assert [event.id for batch in appends for event in batch] == [event.id for event in received]
    together = [batch for batch in appends if len(batch) > 1]
    assert together, "every piece had an append of its own"
    assert max(len(batch) for batch in together) == BATCH_CHUNKS
    for batch in together:  # a step's text, or a step's end and what follows it; ids in a row
        assert [event.id for event in batch] == list(range(batch[0].id, batch[0].id + len(batch)))
        if batch[0].type == "step-complete":
            assert [event.type for event in batch[1:]] in (["step-start"], ["final"])
            continue
        assert {event.type for event in batch} == {"step-delta"}
        assert len({event.json()["step_id"] for event in batch}) == 1
    deltas = [event.json() for event in received if event.type == "step-delta"]
    assert len(appends) < len(received) / 4
    for step_id in {delta["step_id"] for delta in deltas}:
        progress = [d["data"]["progress"] for d in deltas if d["step_id"] == step_id]
        assert progress == sorted(progress) and all(0 <= p <= 100 for p in progress)


@pytest.mark.gen_test(timeout=30)
async def test_at_a_set_pace_each_piece_is_appended_as_it_is_written_and_the_pieces_are_the_same():
    appends, received = await _appends_of_one_run(pace=200_000)
    assert [len(batch) for batch in appends if batch[0].type != "step-complete"] == [1] * (len(received) - 10)
    _, at_full_speed = await _appends_of_one_run(pace=0)

    def pieces(events: list[Event]) -> list[tuple[str, str]]:
        deltas = [event.json() for event in events if event.type == "step-delta"]
        return [(delta["step_id"], delta["data"]["delta"]) for delta in deltas]

    assert pieces(received) == pieces(at_full_speed)


@pytest.mark.gen_test(timeout=30)
async def test_a_steps_end_is_saved_in_one_commit_with_the_next_steps_start_or_the_runs_end():
    saved: list[tuple[list[Event], Session]] = []
    _, received = await _appends_of_one_run(0, saved)
    ends = [event for event in received if event.type == "step-complete"]
    assert len(ends) == 5
    # Saved: each step's start (with the step before's end from the second on), and the run's end.
    assert [[event.type for event in events] for events, _ in saved] == [
        ["step-start"],
        *[["step-complete", "step-start"]] * 4,
        ["step-complete", "final"],
    ]
    for events, state in saved:
        assert state.last_event_id == events[-1].id
        done = [step.id for step in state.steps if step.status == StepStatus.COMPLETED]
        assert done == [
            event.json()["step_id"]
            for event in received
            if event.type == "step-complete" and event.id <= events[-1].id
        ]
        assert all(step.name in state.checkpoints for step in state.steps if step.id in done)
    assert saved[-1][1].status == SessionStatus.COMPLETED
