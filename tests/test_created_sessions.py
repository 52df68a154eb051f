"""A session created here is taken by its first command as stored (tests/test_recent_events.py shows
the read it saves); every command after that still sees what the one before it left."""

from __future__ import annotations

import pytest

from core.models import Session
from tests.test_stream import run_to_end
from workflow.engine.created import CreatedSessions


@pytest.mark.gen_test(timeout=30)
async def test_after_a_cancel_or_a_delete_a_start_sees_what_it_left(api):
    cancelled, deleted = await api.create("tides"), await api.create("glaciers")
    assert (await api.request("POST", f"/api/sessions/{cancelled}/cancel"))[0] == 200
    assert (await api.request("DELETE", f"/api/sessions/{deleted}"))[0] == 204

    status, body, _ = await api.request("POST", f"/api/sessions/{cancelled}/run")
    assert (status, body["status"]) == (409, 409)
    assert "cancelled" in body["error"]
    status, _, _ = await api.request("POST", f"/api/sessions/{deleted}/run")
    assert status == 404


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("config_overrides", [{"max_sessions": 2}])
async def test_a_created_session_pruned_to_make_room_cannot_be_started(api, http_port):
    oldest, _ = await api.create("first"), await api.create("second")
    newest = await api.create("third")  # makes room by pruning the oldest session nobody ran

    assert (await api.request("POST", f"/api/sessions/{oldest}/run"))[0] == 404
    assert (await run_to_end(http_port, newest))[-1].type == "final"


def test_a_created_session_is_taken_once_and_only_the_newest_are_kept():
    created = CreatedSessions(kept=2)
    first, second, third = (Session.new(f"topic {i}") for i in range(3))
    for session in (first, second, third):
        created.keep(session)
    assert created.take(first.id) is None
    assert created.take(second.id) is second
    assert created.take(second.id) is None
    created.forget(third.id)
    assert created.take(third.id) is None
