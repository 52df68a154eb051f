"""Sessions that finished in this process are answered from memory: the same answers, gone when deleted."""

from __future__ import annotations

import pytest

from core.models import Session, SessionStatus
from tests.test_stream import run_to_end
from workflow.engine.finished import FinishedSessions


def counting_reads(engine) -> list[str]:
    """The ids the engine reads from its store from now on."""
    reads: list[str] = []
    read = engine.store.get

    async def get(session_id: str):
        reads.append(session_id)
        return await read(session_id)

    engine.store.get = get
    return reads


@pytest.mark.gen_test(timeout=30)
async def test_a_result_read_after_the_run_is_what_the_store_holds_and_costs_no_store_read(
    api, http_port, engine
):
    session_id = await api.create("tides")
    await run_to_end(http_port, session_id)
    reads = counting_reads(engine)

    result = (await api.request("GET", f"/api/sessions/{session_id}/result"))[:2]
    session = (await api.request("GET", f"/api/sessions/{session_id}"))[:2]

    # Only a store no other process writes (another may delete the session) is read from memory.
    assert bool(reads) == engine.store.shared
    engine._finished.forget(session_id)  # from here, only the store can answer
    assert (await api.request("GET", f"/api/sessions/{session_id}/result"))[:2] == result
    assert (await api.request("GET", f"/api/sessions/{session_id}"))[:2] == session
    assert result[0] == 200 and session[1]["status"] == "completed"


@pytest.mark.gen_test(timeout=30)
async def test_a_finished_session_deleted_is_gone_at_once_from_every_read(api, http_port):
    session_id = await api.create("tides")
    await run_to_end(http_port, session_id)
    assert (await api.request("GET", f"/api/sessions/{session_id}/result"))[0] == 200

    assert (await api.request("DELETE", f"/api/sessions/{session_id}"))[0] == 204

    for path in ("", "/result", "/images/outline-map.svg"):
        status, body, _ = await api.request("GET", f"/api/sessions/{session_id}{path}")
        assert status == 404, (path, body)
    assert (await api.request("DELETE", f"/api/sessions/{session_id}"))[0] == 404


def finished(topic: str) -> Session:
    session = Session.new(topic)
    session.status = SessionStatus.COMPLETED
    return session


def test_a_session_forgotten_is_not_kept_again_by_a_run_end_that_comes_after():
    # A run's end and the prune that deletes it can be answered by one commit, in either order.
    sessions = FinishedSessions()
    late = finished("late")
    sessions.forget(late.id)
    sessions.keep(late)
    assert sessions.get(late.id) is None


def test_only_the_newest_finished_sessions_are_kept():
    sessions = FinishedSessions(kept=2)
    first, second, third = (finished(f"topic {i}") for i in range(3))
    for session in (first, second, third):
        sessions.keep(session)
    assert sessions.get(first.id) is None
    assert sessions.get(second.id) is second and sessions.get(third.id) is third
