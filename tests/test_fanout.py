"""Handing committed events to a session's readers: in batches, in order, and never after their end."""

from __future__ import annotations

import asyncio

import pytest

from core.events import make_event
from core.models import Session
from store.memory import MemoryStore
from workflow.eventlog import CloseReason, LocalEventLog, fanout


async def one_session_log() -> tuple[LocalEventLog, str]:
    store = MemoryStore()
    session = Session.new("tides")
    await store.create(session)
    return LocalEventLog(store, subscriber_buffer=100), session.id


def delta(session_id: str, event_id: int, kind: str = "step-delta"):
    return make_event(event_id, kind, session_id, {"delta": str(event_id), "progress": 0})


@pytest.mark.gen_test
async def test_events_made_faster_than_the_window_reach_each_reader_as_one_batch(monkeypatch):
    window = 0.5  # long enough that a busy machine still makes the next four within it
    monkeypatch.setattr(fanout, "DELIVERY_WINDOW", window)
    log, session_id = await one_session_log()
    subscription = await log.subscribe(session_id, 0)
    batches: list[list[int]] = []
    subscription.write_through = lambda batch: batches.append([e.id for e in batch]) is None

    await log.append(delta(session_id, 1))
    await asyncio.sleep(0)  # after a quiet spell: handed over on the loop's next pass
    assert batches == [[1]]
    for event_id in range(2, 6):  # a run at full speed: within the window of the last batch
        await log.append(delta(session_id, event_id))
        await asyncio.sleep(0)
    assert batches == [[1]]
    async with asyncio.timeout(5):
        while len(batches) < 2:
            await asyncio.sleep(window / 10)
    assert batches == [[1], [2, 3, 4, 5]]


@pytest.mark.gen_test
async def test_ending_the_session_hands_over_what_is_batched_before_the_end():
    log, session_id = await one_session_log()
    subscription = await log.subscribe(session_id, 0)
    await log.append(delta(session_id, 1))
    await log.append(delta(session_id, 2, kind="final"))
    log.close_session(session_id, CloseReason.ENDED)  # before the batch's turn on the loop
    assert [e.id for e in subscription.take()] == [1, 2]
    assert subscription.closed_reason == CloseReason.ENDED


@pytest.mark.gen_test
async def test_an_event_heard_twice_before_its_batch_goes_out_reaches_each_reader_once():
    # On a shared log an instance commits an event and may also read it back from the stream
    # before its own commit is settled: both hand it over, into the same batch.
    log, session_id = await one_session_log()
    subscription = await log.subscribe(session_id, 0)
    batches: list[list[int]] = []
    subscription.write_through = lambda batch: batches.append([e.id for e in batch]) is None
    for event_id in (1, 2, 1, 2, 3):
        log._offer(delta(session_id, event_id))
    async with asyncio.timeout(5):
        while not batches:
            await asyncio.sleep(0.01)
    assert batches == [[1, 2, 3]]
