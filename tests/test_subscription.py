"""The bounded per-reader buffer: order, de-duplication against the replay, and cutting off laggards."""

from __future__ import annotations

import asyncio

import pytest

from core.events import make_event
from workflow.eventlog.subscription import CloseReason, Subscription


def events(first: int, last: int):
    return [
        make_event(i, "step-delta", "s", {"delta": str(i), "progress": 0}) for i in range(first, last + 1)
    ]


@pytest.mark.gen_test
async def test_live_events_that_repeat_the_replayed_backlog_are_dropped():
    subscription = Subscription("s", limit=10, after_id=2)
    for event in events(4, 6):  # raced in while the backlog was being read
        subscription.offer(event)
    subscription.prime(events(3, 5))
    subscription.offer(events(7, 7)[0])
    batch = await asyncio.wait_for(subscription.next_batch(), 5)
    assert [e.id for e in batch] == [3, 4, 5, 6, 7]


@pytest.mark.gen_test
async def test_a_reader_that_falls_behind_is_cut_off_and_told_once():
    cut_offs = []
    subscription = Subscription("s", limit=3)
    subscription.on_cut_off = lambda: cut_offs.append(True)
    for event in events(1, 5):
        subscription.offer(event)
    assert subscription.closed_reason == CloseReason.OVERFLOW
    assert cut_offs == [True]
    assert await asyncio.wait_for(subscription.next_batch(), 5) == []


@pytest.mark.gen_test
async def test_the_replayed_backlog_does_not_count_against_the_limit():
    subscription = Subscription("s", limit=3)
    subscription.prime(events(1, 50))
    subscription.offer(events(51, 51)[0])
    assert not subscription.closed
    assert len(await asyncio.wait_for(subscription.next_batch(), 5)) == 51
    for event in events(52, 55):
        subscription.offer(event)
    assert subscription.closed_reason == CloseReason.OVERFLOW


@pytest.mark.gen_test
async def test_closing_hands_over_what_is_queued_then_ends():
    subscription = Subscription("s", limit=10)
    for event in events(1, 2):
        subscription.offer(event)
    subscription.close()
    subscription.offer(events(3, 3)[0])
    assert [e.id for e in await asyncio.wait_for(subscription.next_batch(), 5)] == [1, 2]
    assert await asyncio.wait_for(subscription.next_batch(), 5) == []


@pytest.mark.gen_test
async def test_a_waiting_reader_wakes_for_the_next_event():
    subscription = Subscription("s", limit=10)
    waiter = asyncio.ensure_future(subscription.next_batch())
    await asyncio.sleep(0)
    assert not waiter.done()
    subscription.offer(events(1, 1)[0])
    assert [e.id for e in await asyncio.wait_for(waiter, 5)] == [1]


@pytest.mark.gen_test
async def test_a_wait_is_one_future_woken_by_an_event_a_close_or_a_heartbeat_and_cancellable():
    subscription = Subscription("s", limit=10)
    assert subscription.take() == []
    waiting = subscription.ready()
    assert not waiting.done()
    subscription.offer(events(1, 1)[0])
    assert waiting.done()
    assert subscription.ready().done()  # something to take already: no wait at all
    assert [e.id for e in subscription.take()] == [1]

    woken = subscription.ready()
    subscription.wake()  # the heartbeat timer's nudge: woken with nothing to take
    assert woken.done() and subscription.take() == []

    cancelled = subscription.ready()
    cancelled.cancel()  # the reader went away mid-wait
    subscription.offer(events(2, 2)[0])  # and the next event does not trip over its wait
    assert [e.id for e in subscription.take()] == [2]

    closing = subscription.ready()
    subscription.close()
    assert closing.done() and subscription.ready().done()


@pytest.mark.gen_test
async def test_a_reader_that_writes_through_gets_events_as_offered_and_queues_what_it_refuses():
    subscription = Subscription("s", limit=10, after_id=1)
    written, accepting = [], True

    def write_through(batch):
        if accepting:
            written.append([e.id for e in batch])
        return accepting

    subscription.prime(events(2, 3))  # the backlog is queued: live events wait behind it, in order
    subscription.write_through = write_through
    subscription.offer(events(4, 4)[0])
    assert written == [] and [e.id for e in subscription.take()] == [2, 3, 4]

    subscription.offer_many(events(3, 6))  # with nothing queued it goes through, repeats dropped
    batch = events(7, 8)
    subscription.offer_many(batch)
    assert written == [[5, 6], [7, 8]] and subscription.take() == []

    accepting = False  # the socket is still busy: queued, the reader woken, and later ones queue behind
    waiting = subscription.ready()
    subscription.offer(events(9, 9)[0])
    accepting = True
    subscription.offer(events(10, 10)[0])
    assert waiting.done() and written == [[5, 6], [7, 8]]
    assert [e.id for e in subscription.take()] == [9, 10]

    subscription.close()  # a closed subscription writes nothing more
    subscription.offer(events(11, 11)[0])
    assert len(written) == 2 and subscription.write_through is None
