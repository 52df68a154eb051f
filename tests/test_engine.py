"""The engine without HTTP: sweeping dead readers, cancelling before a run begins, and draining."""

from __future__ import annotations

import asyncio

import pytest

from conf.settings import settings_for_tests
from core.events import Event
from core.models import SessionStatus
from store import MemoryStore
from tests.providers import FloodProvider, GatedProvider
from tests.stores import BreakableStore
from workflow.engine import SHUTDOWN, Engine
from workflow.engine.run import MAX_UNCOMMITTED
from workflow.eventlog import CloseReason
from workflow.providers.builtin import BuiltinProvider


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
        while len(store.waiting) <= MAX_UNCOMMITTED:  # the run now waits for the latest of them
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
    refused: list[Event] = []
    append = store.append_events

    def counted(session_id, events, state=None, outbox=()):
        refused.extend(events)
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
    assert len(refused) == 1  # the next event was never made
    assert isinstance(run.record_error, Exception) and not run.stored_finished
    stored = await store.events_after(session.id, 0)
    assert [event.id for event in received] == [event.id for event in stored]
    assert (await store.get(session.id)).status == SessionStatus.RUNNING  # a restart resumes it
