"""Retention and the session limit: what is pruned, what is kept, and paging through what is left."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from core.models import utcnow
from tests.providers import GatedProvider
from tests.test_stream import run_to_end


async def age(engine, session_id: str, days: float) -> None:
    session = await engine.get_session(session_id)
    session.updated_at = utcnow() - timedelta(days=days)
    await engine.store.update(session)


@pytest.mark.gen_test
async def test_prune_deletes_finished_sessions_past_retention_and_nothing_else(api, http_port, engine):
    old_done, new_done, old_pending, old_cancelled = [await api.create(f"topic {i}") for i in range(4)]
    for session_id in (old_done, new_done):
        await run_to_end(http_port, session_id)
    await engine.cancel(old_cancelled)
    for session_id in (old_done, old_pending, old_cancelled):
        await age(engine, session_id, days=8)

    assert await engine.prune() == 2
    for gone in (old_done, old_cancelled):
        status, _, _ = await api.request("GET", f"/api/sessions/{gone}")
        assert status == 404
        assert await engine.store.events_after(gone, 0) == []
        assert await engine.store.get_image(gone, "outline-map.svg") is None
    for kept in (new_done, old_pending):
        status, _, _ = await api.request("GET", f"/api/sessions/{kept}")
        assert status == 200
    assert await engine.prune() == 0


@pytest.mark.expect_errors("503 POST /api/sessions")
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"max_sessions": 3}])
async def test_at_the_session_limit_finished_then_never_run_sessions_make_room_and_only_running_work_fills_it(
    api, http_port, engine
):
    first, second, third = [await api.create(f"topic {i}") for i in range(3)]
    await run_to_end(http_port, second)
    fourth = await api.create("fourth")  # makes room by pruning `second`, the only finished one
    assert (await api.request("GET", f"/api/sessions/{second}"))[0] == 404
    assert {s.id for s in await engine.list_sessions(10)} == {first, third, fourth}
    fifth = await api.create("fifth")  # then by the oldest session nobody ever ran
    assert (await api.request("GET", f"/api/sessions/{first}"))[0] == 404
    assert {s.id for s in await engine.list_sessions(10)} == {third, fourth, fifth}

    held = GatedProvider()
    engine.provider = held
    for session_id in (third, fourth, fifth):
        await engine.start(session_id)
    status, body, _ = await api.request("POST", "/api/sessions", {"topic": "sixth"})
    assert status == 503
    assert body == {"error": "3 sessions are kept and none has finished; try again later", "status": 503}
    held.gate.set()
    for session_id in (third, fourth, fifth):
        await api.wait_for_status(session_id, lambda s: s == "completed")


@pytest.mark.gen_test
async def test_one_client_filling_the_store_with_sessions_it_never_runs_locks_nobody_out(api, engine):
    """The lockout found by a hostile client: max_sessions pending sessions meant 503 for everyone."""
    engine.options = replace(engine.options, max_sessions=5, max_pending_per_client=1000)
    for i in range(5):
        await api.create(f"hoarded {i}")
    status, body, _ = await api.request("POST", "/api/sessions", {"topic": "someone else"})
    assert status == 201, body
    assert (await engine.store.count()) == {"pending": 5}


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"max_pending_per_client": 3}])
async def test_a_client_may_hold_only_so_many_sessions_it_never_ran(api, http_port):
    ids = [await api.create(f"topic {i}") for i in range(3)]
    status, body, headers = await api.request("POST", "/api/sessions", {"topic": "one too many"})
    assert (status, body["status"]) == (429, 429)
    assert "never run" in body["error"] and int(headers["Retry-After"]) > 0
    await run_to_end(http_port, ids[0])  # running one frees its place
    assert (await api.request("POST", "/api/sessions", {"topic": "now it fits"}))[0] == 201


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"max_pending_per_client": 5}])
async def test_creates_sent_all_at_once_cannot_pass_the_pending_limit_together(api, engine):
    # A hostile client fires its creates at once, so each is checked while the others are in flight.
    answers = await asyncio.gather(
        *(api.request("POST", "/api/sessions", {"topic": f"t{i}"}) for i in range(30))
    )
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [201] * 5 + [429] * 25, statuses
    assert (await engine.store.count()) == {"pending": 5}


@pytest.mark.gen_test
async def test_pending_sessions_expire_after_pending_ttl_and_started_ones_do_not(api, http_port, engine):
    stale, fresh, ran = [await api.create(f"topic {i}") for i in range(3)]
    await run_to_end(http_port, ran)
    for session_id in (stale, ran):
        session = await engine.get_session(session_id)
        session.created_at = utcnow() - timedelta(seconds=engine.options.pending_ttl + 1)
        await engine.store.update(session)
    assert await engine.prune() == 1
    assert (await api.request("GET", f"/api/sessions/{stale}"))[0] == 404
    for kept in (fresh, ran):
        assert (await api.request("GET", f"/api/sessions/{kept}"))[0] == 200


@pytest.mark.gen_test
async def test_list_sessions_pages_with_a_before_cursor(api):
    ids = [await api.create(f"topic {i}") for i in range(5)]
    seen, before = [], ""
    for _ in range(5):
        status, page, _ = await api.request("GET", f"/api/sessions?limit=2&before={before}")
        assert status == 200
        seen += [s["id"] for s in page["sessions"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == ids[::-1]
    status, _body, _ = await api.request("GET", "/api/sessions?before=no-such-session")
    assert status == 404
