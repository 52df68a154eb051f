"""The SessionStore contract, run against both stores; then what only the SQLite file must do."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import random
import re
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.errors import PendingLimitReached, SessionNotFound, StoreUnavailable
from core.events import STEP_COMPLETE, STEP_DELTA, Event, make_event
from core.models import Session, SessionResult, SessionStatus, StepStatus, utcnow
from store import SessionStore, StoredImage
from store.schema import SCHEMA_VERSION
from store.sqlite import SQLiteStore

S = SessionStatus
PNG = StoredImage("image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
SVG = StoredImage("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"/>')


# -- fixtures and helpers ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def opened(path: Path, commit_window: float = 0) -> AsyncIterator[SQLiteStore]:
    store = await SQLiteStore.open(path, commit_window=commit_window)
    try:
        yield store
    finally:
        await store.close()


def at(microsecond: int, days_ago: float = 0) -> datetime:
    """A moment with sub-millisecond digits, which a store may drop."""
    return (utcnow() - timedelta(days=days_ago)).replace(microsecond=microsecond)


def rich_session(topic: str = "photosynthesis", **changes: Any) -> Session:
    """A session with every field set to something a careless store would lose."""
    session = Session.new(topic, {"provider": "builtin", "audience": {"age": 12, "tags": ["a", "ü/é"]}})
    session.status = S.RUNNING
    session.created_at = at(123456, days_ago=1)
    session.updated_at = at(654321)
    session.run_started_ns = 1_700_000_000_123_456_789
    first, second = session.steps[0], session.steps[1]
    first.status, first.output, first.metadata = StepStatus.COMPLETED, "Key ideas: light → sugar", {"n": 3}
    first.started_at, first.completed_at, first.duration_ns = at(111111), at(999999), 888_888_000
    second.status, second.started_at, second.error = StepStatus.FAILED, at(500500), "provider said no"
    session.checkpoints = {"analyze-topic": {"keywords": ["light", "chlorophyll"], "level": 3}}
    for name, value in changes.items():
        setattr(session, name, value)
    return session


def a_result() -> SessionResult:
    return SessionResult(
        lesson="# Photosynthesis\n\nPlants turn light into sugar — «très» simply.",
        images={"diagram-1": "/api/sessions/x/images/diagram-1"},
        summary="How plants feed themselves.",
        duration_ns=4_321_000_000,
        completed_at=at(987654),
    )


def to_the_millisecond(moment: datetime | None) -> datetime | None:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000) if moment else None


def as_stored(session: Session | None) -> Session:
    """The session with every timestamp cut to the millisecond, which is what the contract keeps."""
    assert session is not None
    kept = copy.deepcopy(session)
    kept.created_at = to_the_millisecond(kept.created_at)
    kept.updated_at = to_the_millisecond(kept.updated_at)
    for step in kept.steps:
        step.started_at = to_the_millisecond(step.started_at)
        step.completed_at = to_the_millisecond(step.completed_at)
    if kept.result:
        kept.result.completed_at = to_the_millisecond(kept.result.completed_at)
    return kept


def an_event(session_id: str, event_id: int, text: str = "") -> Event:
    data = {"text": text or f'chunk {event_id}: ünïcode, a / slash, a "quote" and a \\n'}
    # A fixed timestamp, so that the same event can be made again to compare with what was stored.
    timestamp = f"2024-05-01T12:{event_id // 60 % 60:02d}:{event_id % 60:02d}.{event_id % 1000:03d}Z"
    return make_event(event_id, STEP_DELTA, session_id, data, step_id="step-3", timestamp=timestamp)


def events_for(session_id: str, count: int, first: int = 1) -> list[Event]:
    return [an_event(session_id, event_id) for event_id in range(first, first + count)]


async def create_all(store: SessionStore, *sessions: Session) -> list[Session]:
    for session in sessions:
        await store.create(session)
    return list(sessions)


async def assert_gone(store: SessionStore, session_id: str, image_name: str = "diagram-1") -> None:
    assert await store.get(session_id) is None
    assert await store.events_after(session_id, 0) == []
    assert await store.get_image(session_id, image_name) is None


async def assert_intact(store: SessionStore, session_id: str, events: list[Event]) -> None:
    assert await store.get(session_id) is not None
    assert [e.frame for e in await store.events_after(session_id, 0)] == [e.frame for e in events]
    assert await store.get_image(session_id, "diagram-1") == PNG


# -- sessions ----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_created_session_reads_back_equal_to_the_millisecond(store):
    session = rich_session()
    await store.create(session)
    assert as_stored(await store.get(session.id)) == as_stored(session)


@pytest.mark.gen_test
async def test_a_new_pending_session_reads_back_equal(store):
    session = Session.new("tides")
    await store.create(session)
    assert as_stored(await store.get(session.id)) == as_stored(session)


@pytest.mark.gen_test
async def test_a_session_given_a_result_reads_back_with_that_result(store):
    session = rich_session()
    await store.create(session)
    finished = replace(copy.deepcopy(session), status=S.COMPLETED, result=a_result(), updated_at=at(1001))
    await store.update(finished)
    got = await store.get(session.id)
    assert as_stored(got) == as_stored(finished)
    assert got.result is not None and got.result.lesson == finished.result.lesson


@pytest.mark.gen_test
async def test_getting_an_unknown_session_gives_none(store):
    await store.create(Session.new("tides"))
    assert await store.get("no-such-session") is None


@pytest.mark.gen_test
async def test_updating_replaces_every_field_of_the_stored_session(store):
    session = Session.new("tides")
    await store.create(session)
    changed = rich_session(id=session.id, topic="tides", result=a_result(), status=S.FAILED)
    await store.update(changed)
    assert as_stored(await store.get(session.id)) == as_stored(changed)


@pytest.mark.gen_test
async def test_no_write_brings_back_a_deleted_session(store):
    session = Session.new("tides")
    await store.create(session)
    await store.delete(session.id)
    with pytest.raises(SessionNotFound):
        await store.update(session)
    with pytest.raises(SessionNotFound):
        await store.append_events(session.id, events_for(session.id, 1), session=session)
    with pytest.raises(SessionNotFound):
        await store.append_events(session.id, events_for(session.id, 1))
    with pytest.raises(SessionNotFound):
        await store.put_image(session.id, "diagram-1", PNG)
    await assert_gone(store, session.id)
    assert await store.count() == {}


# -- events ------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_appending_events_with_a_session_stores_the_events_and_the_state_together(store):
    session = Session.new("tides")
    await store.create(session)
    events = events_for(session.id, 3)
    running = replace(copy.deepcopy(session), status=S.RUNNING, last_event_id=3)
    running.checkpoints = {"analyze-topic": {"keywords": ["moon"]}}
    running.steps[0].status = StepStatus.COMPLETED
    await store.append_events(session.id, events, session=running)
    got = await store.get(session.id)
    assert as_stored(got) == as_stored(running)
    assert [e.frame for e in await store.events_after(session.id, 0)] == [e.frame for e in events]


@pytest.mark.gen_test
async def test_events_after_an_id_come_back_in_order_with_byte_identical_frames(store):
    session, other = await create_all(store, Session.new("tides"), Session.new("volcanoes"))
    events = [
        *events_for(session.id, 2),
        make_event(3, STEP_COMPLETE, session.id, {"output": "Ebb → flow", "n": [1, 2.5, None]}, "step-1"),
        *events_for(session.id, 3, first=4),
    ]
    await store.append_events(session.id, events[:4])
    await store.append_events(other.id, events_for(other.id, 5))
    await store.append_events(session.id, events[4:])

    for after in range(len(events) + 1):
        got = await store.events_after(session.id, after)
        assert [e.id for e in got] == [e.id for e in events[after:]]
        assert [e.frame for e in got] == [e.frame for e in events[after:]]
    got = await store.events_after(session.id, 0)
    assert [(e.type, e.session_id, e.payload, e.json()) for e in got] == [
        (e.type, e.session_id, e.payload, e.json()) for e in events
    ]
    assert await store.events_after(session.id, 99) == []
    assert await store.events_after("no-such-session", 0) == []


@pytest.mark.gen_test
async def test_get_reports_the_last_event_id_from_the_log_even_when_the_row_was_saved_before(store):
    session = Session.new("tides")
    await store.create(session)
    assert (await store.get(session.id)).last_event_id == 0
    await store.append_events(session.id, events_for(session.id, 3))
    assert (await store.get(session.id)).last_event_id == 3
    # Saving a state that lags the log does not hide the log's events.
    await store.update(replace(copy.deepcopy(session), status=S.RUNNING, last_event_id=1))
    assert (await store.get(session.id)).last_event_id == 3
    await store.append_events(session.id, events_for(session.id, 2, first=4))
    assert (await store.get(session.id)).last_event_id == 5


# -- listing and counting ----------------------------------------------------------------------


async def with_statuses(store: SessionStore, statuses: list[SessionStatus]) -> list[Session]:
    sessions = [replace(Session.new(f"topic {i}"), status=s) for i, s in enumerate(statuses)]
    return await create_all(store, *sessions)


STATUSES = [S.COMPLETED, S.RUNNING, S.PENDING, S.COMPLETED, S.INTERRUPTED, S.FAILED, S.COMPLETED]


@pytest.mark.gen_test
async def test_list_gives_the_newest_sessions_first_up_to_the_limit(store):
    sessions = await with_statuses(store, STATUSES)
    newest_first = [s.id for s in reversed(sessions)]
    assert [s.id for s in await store.newest(100)] == newest_first
    assert [s.id for s in await store.newest(3)] == newest_first[:3]
    assert [s.id for s in await store.newest(1)] == newest_first[:1]


@pytest.mark.gen_test
async def test_list_gives_sessions_equal_to_what_was_stored(store):
    session = rich_session(result=a_result())
    await store.create(session)
    [listed] = await store.newest(10)
    assert as_stored(listed) == as_stored(session)


@pytest.mark.gen_test
async def test_list_filters_by_status(store):
    sessions = await with_statuses(store, STATUSES)
    for status in S:
        wanted = [s.id for s in reversed(sessions) if s.status == status]
        assert [s.id for s in await store.newest(100, status)] == wanted, status
    completed = [s.id for s in reversed(sessions) if s.status == S.COMPLETED]
    assert [s.id for s in await store.newest(2, S.COMPLETED)] == completed[:2]


@pytest.mark.gen_test
@pytest.mark.parametrize("status", [None, S.COMPLETED])
@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8])
async def test_paging_with_before_visits_every_session_once_newest_first(store, status, limit):
    sessions = await with_statuses(store, STATUSES)
    expected = [s.id for s in reversed(sessions) if status is None or s.status == status]
    seen: list[str] = []
    before = None
    for _ in range(len(sessions) + 2):
        page = await store.newest(limit, status, before)
        assert len(page) <= limit
        seen += [s.id for s in page]
        if len(page) < limit:
            break
        before = page[-1].id
    else:
        pytest.fail(f"paging did not end: {seen}")
    assert seen == expected


@pytest.mark.gen_test
async def test_list_before_the_oldest_or_an_unknown_session_is_empty(store):
    sessions = await with_statuses(store, STATUSES)
    assert await store.newest(10, before=sessions[0].id) == []
    assert await store.newest(10, before="no-such-session") == []


@pytest.mark.gen_test
async def test_unfinished_gives_running_and_interrupted_sessions_oldest_first(store):
    sessions = await with_statuses(store, [*STATUSES, S.RUNNING])
    expected = [s.id for s in sessions if s.status in (S.RUNNING, S.INTERRUPTED)]
    assert len(expected) == 3
    assert [s.id for s in await store.unfinished()] == expected


@pytest.mark.gen_test
async def test_count_gives_the_number_of_sessions_in_each_status(store):
    assert await store.count() == {}
    sessions = await with_statuses(store, STATUSES)
    assert await store.count() == {
        "completed": 3,
        "running": 1,
        "pending": 1,
        "interrupted": 1,
        "failed": 1,
    }
    await store.update(replace(sessions[1], status=S.CANCELLED))
    await store.delete(sessions[0].id)
    assert await store.count() == {
        "completed": 2,
        "cancelled": 1,
        "pending": 1,
        "interrupted": 1,
        "failed": 1,
    }


@pytest.mark.gen_test
async def test_count_of_one_owner_follows_creates_status_changes_and_deletes(store):
    def owned(owner: str, topic: str, status: SessionStatus = S.PENDING) -> Session:
        return replace(Session.new(topic, owner=owner), status=status)

    alice = await create_all(
        store, owned("alice", "a1"), owned("alice", "a2"), owned("alice", "a3", S.COMPLETED)
    )
    await create_all(store, owned("bob", "b1"), owned("", "anonymous"))
    assert await store.count("alice") == {"pending": 2, "completed": 1}
    assert await store.count("bob") == {"pending": 1}
    assert await store.count("") == {"pending": 1}
    assert await store.count("nobody") == {}
    await store.update(replace(alice[0], status=S.RUNNING))
    await store.update(replace(alice[0], status=S.RUNNING))  # the same status again changes nothing
    await store.delete(alice[1].id)
    assert await store.count("alice") == {"running": 1, "completed": 1}
    assert await store.count() == {"running": 1, "completed": 1, "pending": 2}
    await store.delete(alice[1].id)  # a second delete of the same session counts nothing twice
    assert await store.count("alice") == {"running": 1, "completed": 1}


@pytest.mark.gen_test
async def test_create_with_a_pending_limit_refuses_the_owner_at_it_and_no_one_else(store):
    for topic in ("a1", "a2"):
        await store.create(Session.new(topic, owner="alice"), max_pending=2)
    await store.create(replace(Session.new("done", owner="alice"), status=S.COMPLETED))
    refused = Session.new("a3", owner="alice")
    with pytest.raises(PendingLimitReached) as caught:
        await store.create(refused, max_pending=2)
    assert caught.value.pending == 2
    assert await store.get(refused.id) is None  # nothing of it was kept
    await store.create(Session.new("b1", owner="bob"), max_pending=2)  # another owner's own count
    await store.create(Session.new("a3", owner="alice"))  # no limit asked for: stored
    assert await store.count("alice") == {"pending": 3, "completed": 1}


# -- deleting ----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_delete_removes_the_session_with_its_events_and_images_and_nothing_else(store):
    doomed, kept = await create_all(store, Session.new("tides"), Session.new("volcanoes"))
    for session in (doomed, kept):
        await store.append_events(session.id, events_for(session.id, 3))
        await store.put_image(session.id, "diagram-1", PNG)
    assert await store.delete(doomed.id) is True
    await assert_gone(store, doomed.id)
    await assert_intact(store, kept.id, events_for(kept.id, 3))
    assert [s.id for s in await store.newest(10)] == [kept.id]
    assert await store.count() == {"pending": 1}


@pytest.mark.gen_test
async def test_deleting_an_unknown_or_already_deleted_session_returns_false(store):
    session = Session.new("tides")
    await store.create(session)
    assert await store.delete("no-such-session") is False
    assert await store.delete(session.id) is True
    assert await store.delete(session.id) is False


# -- images ------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_an_image_reads_back_with_its_bytes_and_content_type(store):
    session, other = await create_all(store, Session.new("tides"), Session.new("volcanoes"))
    await store.put_image(session.id, "diagram-1", PNG)
    await store.put_image(session.id, "diagram-2", SVG)
    got = await store.get_image(session.id, "diagram-1")
    assert got == PNG and type(got.data) is bytes
    assert await store.get_image(session.id, "diagram-2") == SVG
    assert await store.get_image(other.id, "diagram-1") is None


@pytest.mark.gen_test
async def test_putting_an_image_again_under_the_same_name_replaces_it(store):
    session = Session.new("tides")
    await store.create(session)
    await store.put_image(session.id, "diagram-1", PNG)
    await store.put_image(session.id, "diagram-1", SVG)
    assert await store.get_image(session.id, "diagram-1") == SVG


@pytest.mark.gen_test
async def test_an_unknown_image_is_none(store):
    session = Session.new("tides")
    await store.create(session)
    assert await store.get_image(session.id, "diagram-9") is None
    assert await store.get_image("no-such-session", "diagram-1") is None


# -- pruning -----------------------------------------------------------------------------------


async def sessions_with_logs(store: SessionStore, spec: list[tuple[SessionStatus, float]]) -> list[Session]:
    """Sessions created in the order given, each (status, days since its last update), with three
    events and an image each."""
    sessions = []
    for i, (status, days_ago) in enumerate(spec):
        session = replace(Session.new(f"topic {i}"), status=status, updated_at=at(500000, days_ago))
        await store.create(session)
        await store.append_events(session.id, events_for(session.id, 3))
        await store.put_image(session.id, "diagram-1", PNG)
        sessions.append(session)
    return sessions


@pytest.mark.gen_test
async def test_prune_deletes_finished_sessions_updated_before_the_cutoff_with_their_logs_and_images(
    store,
):
    old, new = 10, 0
    spec = [
        (S.COMPLETED, old),
        (S.PENDING, old),
        (S.FAILED, old),
        (S.RUNNING, old),
        (S.CANCELLED, old),
        (S.INTERRUPTED, old),
        (S.COMPLETED, new),
        (S.FAILED, new),
    ]
    sessions = await sessions_with_logs(store, spec)
    deleted = await store.prune(utcnow() - timedelta(days=1), keep_at_most=100)
    assert sorted(deleted) == sorted(sessions[i].id for i in (0, 2, 4))
    for i, session in enumerate(sessions):
        if i in (0, 2, 4):
            await assert_gone(store, session.id)
        else:
            await assert_intact(store, session.id, events_for(session.id, 3))
            assert as_stored(await store.get(session.id)) == as_stored(replace(session, last_event_id=3))


@pytest.mark.gen_test
async def test_prune_then_deletes_the_oldest_finished_sessions_beyond_keep_at_most(store):
    spec = [
        (S.COMPLETED, 10),  # before the cutoff: goes first, and does not count toward the excess
        (S.RUNNING, 0.5),
        (S.COMPLETED, 0.4),  # the oldest finished one after the cutoff
        (S.PENDING, 0.3),
        (S.FAILED, 0.2),  # the next oldest
        (S.CANCELLED, 0.1),
        (S.COMPLETED, 0),
    ]
    sessions = await sessions_with_logs(store, spec)
    deleted = await store.prune(utcnow() - timedelta(days=1), keep_at_most=4)
    assert sorted(deleted) == sorted(sessions[i].id for i in (0, 2, 4))
    assert [s.id for s in await store.newest(10)] == [sessions[i].id for i in (6, 5, 3, 1)]
    for i in (0, 2, 4):
        await assert_gone(store, sessions[i].id)
    for i in (1, 3, 5, 6):
        await assert_intact(store, sessions[i].id, events_for(sessions[i].id, 3))


@pytest.mark.gen_test
async def test_prune_never_deletes_pending_running_or_interrupted_sessions(store):
    spec = [(S.PENDING, 10), (S.RUNNING, 10), (S.INTERRUPTED, 10), (S.COMPLETED, 0), (S.RUNNING, 0)]
    sessions = await sessions_with_logs(store, spec)
    deleted = await store.prune(utcnow() + timedelta(days=1), keep_at_most=0)
    assert deleted == [sessions[3].id]
    assert [s.id for s in await store.newest(10)] == [sessions[i].id for i in (4, 2, 1, 0)]
    for i in (0, 1, 2, 4):
        await assert_intact(store, sessions[i].id, events_for(sessions[i].id, 3))


@pytest.mark.gen_test
async def test_prune_with_nothing_to_do_deletes_nothing(store):
    assert await store.prune(utcnow(), keep_at_most=0) == []
    sessions = await sessions_with_logs(store, [(S.COMPLETED, 0), (S.FAILED, 0), (S.RUNNING, 10)])
    assert await store.prune(utcnow() - timedelta(days=1), keep_at_most=3) == []
    assert await store.prune(utcnow() - timedelta(days=1), keep_at_most=100) == []
    for session in sessions:
        await assert_intact(store, session.id, events_for(session.id, 3))


# -- describe ----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_describe_names_the_kind_and_says_the_store_is_writable(store):
    facts = await store.describe()
    assert facts["kind"] == store.kind and facts["kind"] in ("memory", "sqlite", "redis")
    assert facts["writable"] is True


# -- SQLite only -------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_describe_of_a_sqlite_store_gives_its_path_and_size(tmp_path):
    path = tmp_path / "store.db"
    async with opened(path) as store:
        facts = await store.describe()
        assert facts["path"] == str(path) and facts["size_bytes"] > 0


@pytest.mark.gen_test
async def test_opening_creates_missing_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "store.db"
    async with opened(path) as store:
        await store.create(Session.new("tides"))
    assert path.exists()


@pytest.mark.gen_test
async def test_everything_survives_closing_and_reopening_the_file(tmp_path):
    path = tmp_path / "store.db"
    kept = rich_session(result=a_result(), status=S.COMPLETED)
    running = rich_session("volcanoes")
    interrupted = replace(Session.new("tides"), status=S.INTERRUPTED)
    events = events_for(kept.id, 4)
    async with opened(path) as store:
        await create_all(store, kept, running, interrupted)
        await store.append_events(kept.id, events[:2])
        await store.append_events(kept.id, events[2:], session=kept)
        await store.append_events(running.id, events_for(running.id, 2))
        await store.put_image(kept.id, "diagram-1", PNG)
        await store.put_image(kept.id, "diagram-2", SVG)

    async with opened(path) as store:
        assert as_stored(await store.get(kept.id)) == as_stored(replace(kept, last_event_id=4))
        assert as_stored(await store.get(running.id)) == as_stored(replace(running, last_event_id=2))
        assert [e.frame for e in await store.events_after(kept.id, 0)] == [e.frame for e in events]
        assert [e.frame for e in await store.events_after(kept.id, 2)] == [e.frame for e in events[2:]]
        assert await store.get_image(kept.id, "diagram-1") == PNG
        assert await store.get_image(kept.id, "diagram-2") == SVG
        assert [s.id for s in await store.newest(10)] == [interrupted.id, running.id, kept.id]
        assert [s.id for s in await store.unfinished()] == [running.id, interrupted.id]
        assert await store.count() == {"completed": 1, "running": 1, "interrupted": 1}
        # Creation order carries on across the reopen.
        later = Session.new("glaciers")
        await store.create(later)
        assert [s.id for s in await store.newest(2)] == [later.id, interrupted.id]


@pytest.mark.gen_test
async def test_many_concurrent_appends_all_land_in_far_fewer_commits_than_writes(tmp_path):
    async with opened(tmp_path / "store.db", commit_window=0.005) as store:
        sessions = await create_all(store, *(Session.new(f"topic {i}") for i in range(10)))
        writes = [(session, event_id) for event_id in range(1, 21) for session in sessions]
        before = (await store.describe())["commits"]
        async with asyncio.timeout(20):
            await asyncio.gather(*(store.append_events(s.id, [an_event(s.id, i)]) for s, i in writes))
        commits = (await store.describe())["commits"] - before
        assert 1 <= commits < len(writes) / 10, f"{len(writes)} writes took {commits} commits"
        for session in sessions:
            got = await store.events_after(session.id, 0)
            assert [e.frame for e in got] == [e.frame for e in events_for(session.id, 20)]
            assert (await store.get(session.id)).last_event_id == 20


async def in_one_batch(store: SQLiteStore, writes: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the writes as one batch: hold the writer thread on an operation while they all queue up
    behind it, then let it go. `writes` are thunks, since a write is queued the moment it is made.
    Gives each write's outcome, a result or an exception."""
    holding, release = threading.Event(), threading.Event()

    def hold(_connection: sqlite3.Connection) -> None:
        holding.set()
        release.wait(10)

    held = asyncio.ensure_future(store._writer.submit(hold))
    tasks: list[asyncio.Future[Any]] = []
    try:
        async with asyncio.timeout(10):
            while not holding.is_set():
                await asyncio.sleep(0.001)
        tasks = [asyncio.ensure_future(write()) for write in writes]
        async with asyncio.timeout(10):
            while store._writer._queue.qsize() < len(tasks):
                await asyncio.sleep(0.001)
    finally:
        release.set()
    async with asyncio.timeout(10):
        _, *outcomes = await asyncio.gather(held, *tasks, return_exceptions=True)
    return outcomes


@pytest.mark.gen_test
async def test_one_failing_write_in_a_batch_does_not_undo_the_others(tmp_path):
    path = tmp_path / "store.db"
    async with opened(path, commit_window=0.005) as store:
        bad, *good = await create_all(store, *(Session.new(f"topic {i}") for i in range(6)))
        first = an_event(bad.id, 1, "the original")
        await store.append_events(bad.id, [first])
        commits_before = (await store.describe())["commits"]

        duplicate = an_event(bad.id, 1, "a duplicate")
        failure, *successes = await in_one_batch(
            store,
            [
                lambda: store.append_events(bad.id, [duplicate], replace(bad, status=S.RUNNING)),
                *(
                    lambda s=s: store.append_events(s.id, [an_event(s.id, 1)], replace(s, status=S.RUNNING))
                    for s in good
                ),
            ],
        )

        assert isinstance(failure, StoreUnavailable) and str(path) in str(failure)
        assert successes == [None] * len(good)
        assert (await store.describe())["commits"] - commits_before == 2  # the hold's and the batch's
        # The failed call kept neither its event nor its state; the others kept both.
        assert [e.frame for e in await store.events_after(bad.id, 0)] == [first.frame]
        assert (await store.get(bad.id)).status == S.PENDING
        for session in good:
            assert [e.frame for e in await store.events_after(session.id, 0)] == [
                an_event(session.id, 1).frame
            ]
            assert (await store.get(session.id)).status == S.RUNNING
        assert (await store.describe())["writable"] is True


@pytest.mark.gen_test
async def test_pending_writes_counts_what_is_queued_until_the_writer_answers_it(tmp_path):
    async with opened(tmp_path / "store.db") as store:
        session = (await create_all(store, Session.new("topic")))[0]
        holding, release = threading.Event(), threading.Event()
        held = store._writer.submit(lambda _connection: holding.set() or release.wait(10))
        try:
            async with asyncio.timeout(10):
                while not holding.is_set():
                    await asyncio.sleep(0.001)
            appends = [store.append_events(session.id, [an_event(session.id, i)]) for i in (1, 2, 3)]
            appends[2].cancel()  # a caller that stopped waiting: its write is still to be made
            assert store._writer.pending == 4
        finally:
            release.set()
        async with asyncio.timeout(10):
            await asyncio.gather(held, *appends[:2])
            while store._writer.pending:
                await asyncio.sleep(0.001)
        assert (await store.describe())["pending_writes"] == 0
        assert len(await store.events_after(session.id, 0)) == 3


@pytest.mark.gen_test
async def test_event_appends_made_together_still_succeed_and_fail_one_by_one(tmp_path):
    # Plain event appends queued back to back are made by one statement: one failing among them
    # (a duplicate id, a session deleted meanwhile) must still fail alone, each saying why.
    async with opened(tmp_path / "store.db", commit_window=0.005) as store:
        first, duplicated, deleted, last = await create_all(
            store, *(Session.new(f"topic {i}") for i in range(4))
        )
        await store.append_events(duplicated.id, [an_event(duplicated.id, 1, "the original")])
        await store.delete(deleted.id)
        commits_before = (await store.describe())["commits"]

        outcomes = await in_one_batch(
            store,
            [
                lambda: store.append_events(first.id, [an_event(first.id, 1), an_event(first.id, 2)]),
                lambda: store.append_events(first.id, [an_event(first.id, 3)]),
                lambda: store.append_events(duplicated.id, [an_event(duplicated.id, 1, "a duplicate")]),
                lambda: store.append_events(deleted.id, [an_event(deleted.id, 1)]),
                lambda: store.append_events(last.id, [an_event(last.id, 1)]),
            ],
        )

        assert outcomes[:2] == [None, None] and outcomes[4] is None
        assert isinstance(outcomes[2], StoreUnavailable)
        assert isinstance(outcomes[3], SessionNotFound)
        assert (await store.describe())["commits"] - commits_before == 2  # the hold's and the batch's
        assert [e.frame for e in await store.events_after(first.id, 0)] == [
            e.frame for e in events_for(first.id, 3)
        ]
        original = an_event(duplicated.id, 1, "the original")
        assert [e.frame for e in await store.events_after(duplicated.id, 0)] == [original.frame]
        assert [e.frame for e in await store.events_after(last.id, 0)] == [an_event(last.id, 1).frame]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "content",
    [b"not a database\n" * 100, random.Random(7).randbytes(16384)],
    ids=["text", "random-bytes"],
)
async def test_opening_a_corrupt_file_raises_store_unavailable_naming_the_path(tmp_path, content):
    path = tmp_path / "corrupt.db"
    path.write_bytes(content)
    with pytest.raises(StoreUnavailable, match=re.escape(str(path))):
        await SQLiteStore.open(path, commit_window=0)
    assert path.read_bytes() == content  # left as it was found


@pytest.mark.gen_test
async def test_a_database_from_a_newer_schema_is_refused_naming_the_path_and_the_version(tmp_path):
    path = tmp_path / "store.db"
    async with opened(path) as store:
        await store.create(Session.new("tides"))
    newer = SCHEMA_VERSION + 1
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(newer),))

    with pytest.raises(StoreUnavailable) as refused:
        await SQLiteStore.open(path, commit_window=0)
    message = str(refused.value)
    assert str(path) in message
    assert f"schema version {newer}" in message and f"({SCHEMA_VERSION})" in message
    with contextlib.closing(sqlite3.connect(path)) as connection:
        version = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(newer),)


@contextlib.contextmanager
def unwritable(*files: Path, directory: Path | None = None) -> Iterator[None]:
    """Make files unwritable. Root ignores permissions, so as root they are made immutable
    (chattr +i), which even root cannot write; otherwise the files and the directory are chmod 444."""
    if os.geteuid() == 0:
        done: list[Path] = []
        try:
            for path in files:
                try:
                    subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
                except (OSError, subprocess.CalledProcessError) as exc:
                    pytest.skip(f"chattr +i {path} failed, so root cannot be kept from writing: {exc}")
                done.append(path)
            yield
        finally:
            for path in reversed(done):
                subprocess.run(["chattr", "-i", str(path)], check=True, capture_output=True)
    else:
        targets = [*files, *([directory] if directory else [])]
        modes = {path: path.stat().st_mode for path in targets}
        try:
            for path in targets:
                path.chmod(0o444)
            yield
        finally:
            for path in reversed(targets):
                path.chmod(modes[path])


@pytest.mark.gen_test
async def test_a_read_only_database_is_refused_at_open_naming_the_path(tmp_path):
    directory = tmp_path / "data"
    path = directory / "store.db"
    async with opened(path) as store:
        await store.create(Session.new("tides"))
    content = path.read_bytes()

    # The store proves at open that it can write, so a read-only file stops the start rather than
    # failing the first request.
    with (
        unwritable(path, directory=directory),
        pytest.raises(StoreUnavailable, match=re.escape(str(path))),
    ):
        await SQLiteStore.open(path, commit_window=0)
    assert path.read_bytes() == content


@pytest.mark.expect_errors("database commit of")
@pytest.mark.gen_test
async def test_a_write_that_fails_at_run_time_raises_and_the_store_keeps_serving_reads(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can make an open file unwritable (chattr +i); chmod spares open files")
    path = tmp_path / "store.db"
    async with opened(path) as store:
        session = Session.new("tides")
        await store.create(session)
        await store.append_events(session.id, events_for(session.id, 2))
        await store.put_image(session.id, "diagram-1", PNG)
        assert (await store.get(session.id)).last_event_id == 2
        # In WAL mode commits go to the -wal file, so that one has to be unwritable too.
        with unwritable(path, Path(f"{path}-wal")):
            with pytest.raises(StoreUnavailable, match=re.escape(str(path))):
                await store.append_events(session.id, events_for(session.id, 1, first=3))
            assert (await store.describe())["writable"] is False
            assert (await store.get(session.id)).last_event_id == 2
            assert [e.frame for e in await store.events_after(session.id, 0)] == [
                e.frame for e in events_for(session.id, 2)
            ]
            assert await store.get_image(session.id, "diagram-1") == PNG
            assert [s.id for s in await store.newest(10)] == [session.id]
        # The file is writable again, but the last write failed; the next one succeeds and says so.
        assert (await store.describe())["writable"] is False
        await store.append_events(session.id, events_for(session.id, 1, first=3))
        assert (await store.describe())["writable"] is True
        assert (await store.get(session.id)).last_event_id == 3


@pytest.mark.expect_errors("database commit of")
@pytest.mark.gen_test
async def test_a_batch_whose_commit_fails_answers_every_write_in_it_even_one_that_failed_alone(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can make an open file unwritable (chattr +i); chmod spares open files")
    path = tmp_path / "store.db"
    async with opened(path, commit_window=0.005) as store:
        bad, good = await create_all(store, Session.new("tides"), Session.new("volcanoes"))
        first = an_event(bad.id, 1)
        await store.append_events(bad.id, [first])
        with unwritable(path, Path(f"{path}-wal")):
            outcomes = await in_one_batch(
                store,
                [
                    lambda: store.append_events(bad.id, [an_event(bad.id, 1, "a duplicate")]),
                    lambda: store.append_events(good.id, [an_event(good.id, 1)]),
                ],
            )
            assert [type(outcome) for outcome in outcomes] == [StoreUnavailable] * 2
            assert all(str(path) in str(outcome) for outcome in outcomes)
            assert [e.frame for e in await store.events_after(bad.id, 0)] == [first.frame]
            assert await store.events_after(good.id, 0) == []
            assert (await store.describe())["writable"] is False
        # The writer is still there to take the next write.
        async with asyncio.timeout(10):
            await store.append_events(good.id, [an_event(good.id, 1)])
        assert [e.frame for e in await store.events_after(good.id, 0)] == [an_event(good.id, 1).frame]
        assert (await store.describe())["writable"] is True


@pytest.mark.gen_test
async def test_a_version_1_database_is_migrated_keeping_its_sessions_events_and_images(tmp_path):
    path = tmp_path / "store.db"
    async with opened(path) as store:
        session = Session.new("tides")
        await store.create(session)
        events = events_for(session.id, 3)
        await store.append_events(session.id, events)
        await store.put_image(session.id, "diagram-1", PNG)
    _downgrade_to_version_1(path, orphan_of=session.id)
    async with opened(path) as store:
        assert (await store.get(session.id)).last_event_id == 3
        got = await store.events_after(session.id, 0)
        assert [(e.type, e.frame) for e in got] == [(e.type, e.frame) for e in events]
        assert await store.get_image(session.id, "diagram-1") == PNG
        assert await store.events_after("orphan", 0) == []  # what version 1 left behind is dropped
        await store.delete(session.id)
        await assert_gone(store, session.id)
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )


@pytest.mark.gen_test
async def test_a_version_3_database_gets_its_session_counts_from_the_sessions_it_has(tmp_path):
    path = tmp_path / "store.db"
    async with opened(path) as store:
        for status in (S.PENDING, S.PENDING, S.COMPLETED):
            await store.create(replace(Session.new("tides", owner="alice"), status=status))
        await store.create(Session.new("anonymous"))
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.executescript(
            f"BEGIN; {DROP_SESSION_COUNTS} UPDATE meta SET value = '3' WHERE key = 'schema_version'; COMMIT;"
        )
    async with opened(path) as store:
        assert await store.count("alice") == {"pending": 2, "completed": 1}
        assert await store.count() == {"pending": 3, "completed": 1}
        await store.create(Session.new("volcanoes", owner="alice"))  # and kept from then on
        assert await store.count("alice") == {"pending": 3, "completed": 1}


# What version 4 added: the session counts and the triggers that keep them.
DROP_SESSION_COUNTS = """
    DROP TRIGGER session_counts_insert;
    DROP TRIGGER session_counts_delete;
    DROP TRIGGER session_counts_update;
    DROP TABLE session_counts;
"""


def _downgrade_to_version_1(path: Path, orphan_of: str) -> None:
    """Rewrite the file as the first release laid it out: no foreign keys, event types or owners."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.executescript(
            f"""
            BEGIN;
            CREATE TABLE events_v1 (session_id TEXT NOT NULL, id INTEGER NOT NULL, payload BLOB NOT NULL,
                PRIMARY KEY (session_id, id)) WITHOUT ROWID;
            INSERT INTO events_v1 SELECT session_id, id, payload FROM events;
            INSERT INTO events_v1 SELECT 'orphan', id, payload FROM events WHERE session_id = '{orphan_of}';
            DROP TABLE events;
            ALTER TABLE events_v1 RENAME TO events;
            CREATE TABLE images_v1 (session_id TEXT NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL,
                data BLOB NOT NULL, PRIMARY KEY (session_id, name)) WITHOUT ROWID;
            INSERT INTO images_v1 SELECT * FROM images;
            DROP TABLE images;
            ALTER TABLE images_v1 RENAME TO images;
            {DROP_SESSION_COUNTS}
            DROP INDEX sessions_by_owner;
            ALTER TABLE sessions DROP COLUMN owner;
            UPDATE meta SET value = '1' WHERE key = 'schema_version';
            COMMIT;
            """
        )
