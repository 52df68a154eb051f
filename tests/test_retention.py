"""Retention and the session limit: what is pruned, what is kept, and paging through what is left."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.models import SessionStatus, utcnow
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
async def test_at_the_session_limit_the_oldest_finished_goes_first_then_creates_get_503(
    api, http_port, engine
):
    first, second, third = [await api.create(f"topic {i}") for i in range(3)]
    await run_to_end(http_port, second)
    fourth = await api.create("fourth")  # makes room by pruning `second`, the only finished one
    assert (await api.request("GET", f"/api/sessions/{second}"))[0] == 404
    assert {s.id for s in await engine.list_sessions(10)} == {first, third, fourth}
    status, body, _ = await api.request("POST", "/api/sessions", {"topic": "fifth"})
    assert status == 503
    assert body == {"error": "3 sessions are kept and none has finished; try again later", "status": 503}
    assert (await engine.get_session(first)).status == SessionStatus.PENDING


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
