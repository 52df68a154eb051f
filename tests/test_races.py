"""Hostile clients: run, cancel, delete and read racing on the same sessions, through real sockets."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from core.store import SessionStore
from tests.providers import GatedProvider
from tests.sse_client import SSEEvent, open_sse
from tests.stores import BreakableStore
from tests.test_stream import run_to_end
from workflow.providers.builtin import BuiltinProvider

FINISHED = {"completed", "failed", "cancelled"}
TERMINAL_STATUS = {"final": "completed"}


def logged(events: list[SSEEvent]) -> list[SSEEvent]:
    return [event for event in events if event.id is not None]


async def replay(http_port: int, session_id: str) -> list[SSEEvent]:
    """The session's whole log, read back from the start."""
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "GET")
    assert stream.status == 200, stream.status
    return logged(await stream.read_all())


async def assert_consistent(api: Any, http_port: int, session_id: str) -> None:
    """One state, told the same by GET and by the log: ids 1..N, one terminal event, last."""
    status, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert status == 200
    if session["status"] == "pending":
        assert {step["status"] for step in session["steps"]} == {"pending"}
        return
    assert session["status"] in FINISHED, session["status"]
    events = await replay(http_port, session_id)
    assert [int(e.id) for e in events] == list(range(1, len(events) + 1))  # type: ignore[arg-type]
    terminal = [e for e in events if e.type in ("final", "error")]
    assert len(terminal) == 1 and terminal[0] is events[-1]
    told = "completed" if terminal[0].type == "final" else terminal[0].json["data"]["status"]
    assert told == session["status"]


# -- defect 1: a deleted session must stay deleted -----------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_session_deleted_while_a_cancel_and_a_run_race_it_stays_deleted(api, http_port):
    sessions = [await api.create(f"topic {i}") for i in range(30)]

    async def run(session_id: str) -> None:
        stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
        if stream.status == 200:
            await stream.read_all()
        stream.close()

    async def race(session_id: str) -> None:
        order = [
            run(session_id),
            api.request("POST", f"/api/sessions/{session_id}/cancel"),
            api.request("DELETE", f"/api/sessions/{session_id}"),
        ]
        random.shuffle(order)
        await asyncio.gather(*order)

    await asyncio.gather(*(race(s) for s in sessions))
    for session_id in sessions:
        # Every DELETE was answered 204 (or 404 after another's delete); none may come back.
        status, _, _ = await api.request("GET", f"/api/sessions/{session_id}")
        assert status == 404, f"session {session_id} came back after it was deleted"
    _, listing, _ = await api.request("GET", "/api/sessions?limit=100")
    assert listing["sessions"] == []


# -- defect 2: a cancel racing a run never leaves a session running --------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_cancel_racing_a_run_leaves_every_session_in_one_finished_state(api, http_port):
    sessions = [await api.create(f"topic {i}") for i in range(30)]

    async def run(session_id: str, method: str) -> None:
        stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", method)
        assert stream.status in (200, 409)
        if stream.status == 200:
            events = await stream.read_all()
            assert events[-1].type in ("final", "error")
        stream.close()

    async def race(session_id: str) -> None:
        order = [
            run(session_id, random.choice(["GET", "POST"])),
            api.request("POST", f"/api/sessions/{session_id}/cancel"),
        ]
        random.shuffle(order)
        await asyncio.gather(*order)

    await asyncio.gather(*(race(s) for s in sessions))
    for session_id in sessions:
        session = await api.wait_for_status(session_id, lambda s: s in FINISHED)
        assert session["status"] in ("cancelled", "completed")
        await assert_consistent(api, http_port, session_id)


# -- defect 3: every stream ends when its run ends -------------------------------------------------


@pytest.fixture
def provider() -> GatedProvider:
    """The built-in lesson, whose create-content a test can hold by clearing the gate."""
    gated = GatedProvider()
    gated.gate.set()
    return gated


@pytest.mark.gen_test(timeout=30)
async def test_a_last_event_id_past_the_end_of_a_running_session_follows_it_to_its_end(
    api, http_port, provider
):
    provider.gate.clear()
    session_id = await api.create()
    first = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
    await asyncio.wait_for(provider.reached.wait(), 10)
    ahead = await open_sse(
        http_port, f"/api/sessions/{session_id}/run", "GET", headers={"Last-Event-ID": "100000"}
    )
    assert ahead.status == 200
    connected = await ahead.next_event()
    assert connected is not None and connected.type == "connected"
    # A position past the end is taken as the end of the log as it is now.
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert connected.json["data"]["last_event_id"] <= 100000
    provider.gate.set()
    events = await ahead.read_all(timeout=10)
    assert events[-1].type == "final"
    assert all(int(e.id) > 0 for e in logged(events))  # type: ignore[arg-type]
    await first.read_all()
    assert session["status"] == "running"


@pytest.mark.gen_test(timeout=30)
async def test_a_last_event_id_past_the_end_of_a_pending_session_starts_it_and_streams_it_whole(
    api, http_port, provider
):
    session_id = await api.create()
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run?last_event_id=100000", "GET")
    assert stream.status == 200
    events = logged(await stream.read_all(timeout=10))
    assert int(events[0].id) == 1 and events[-1].type == "final"  # type: ignore[arg-type]


@pytest.mark.gen_test(timeout=30)
async def test_a_last_event_id_past_the_end_of_a_finished_session_gets_204(api, http_port):
    session_id = await api.create()
    await (await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")).read_all()
    stream = await open_sse(
        http_port, f"/api/sessions/{session_id}/run", "GET", headers={"Last-Event-ID": "100000"}
    )
    assert stream.status == 204


# -- defect 4: a cancel the store did not take is a 503 --------------------------------------------


@pytest.fixture
def store(store: SessionStore) -> BreakableStore:  # type: ignore[override]
    return BreakableStore(store)


@pytest.mark.expect_errors("cannot write to the database", "503 POST")
@pytest.mark.gen_test(timeout=30)
async def test_cancelling_a_pending_session_while_the_store_cannot_write_answers_503(api, store):
    session_id = await api.create()
    store.broken = True
    status, body, _ = await api.request("POST", f"/api/sessions/{session_id}/cancel")
    assert (status, body["status"]) == (503, 503)
    store.broken = False
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert session["status"] == "pending"


@pytest.mark.expect_errors("cannot write to the database", "503 POST")
@pytest.mark.gen_test(timeout=30)
async def test_cancelling_a_running_session_while_the_store_cannot_write_answers_503(
    api, http_port, store, provider
):
    provider.gate.clear()
    session_id = await api.create()
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
    await asyncio.wait_for(provider.reached.wait(), 10)
    store.broken = True
    status, body, _ = await api.request("POST", f"/api/sessions/{session_id}/cancel")
    assert (status, body["status"]) == (503, 503)
    assert "cancel" in body["error"]
    stream.close()


@pytest.mark.expect_errors("cannot write to the database", "503 POST")
@pytest.mark.gen_test(timeout=30)
async def test_a_start_the_store_refused_leaves_it_pending_and_the_next_start_runs_it(api, http_port, store):
    # The start takes the session as its create stored it (no read); the refused write must not
    # leave that copy, marked running, for the next start to find.
    session_id = await api.create("tides")
    store.broken = True
    status, body, _ = await api.request("POST", f"/api/sessions/{session_id}/run")
    assert (status, body["status"]) == (503, 503)
    store.broken = False
    assert (await api.request("GET", f"/api/sessions/{session_id}"))[1]["status"] == "pending"
    events = await run_to_end(http_port, session_id)
    assert events[-1].type == "final"


# -- defect 6: a client that drops while sending a body leaves no request behind --------------------


def request_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "RequestHandler._execute"
    ]


@pytest.mark.gen_test(timeout=30)
async def test_a_client_that_hangs_up_while_sending_a_run_body_leaves_no_pending_request(api, http_port):
    session_id = await api.create()
    _, writer = await asyncio.open_connection("127.0.0.1", http_port)
    head = (
        f"POST /api/sessions/{session_id}/run HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a": '
    )
    writer.write(head.encode())
    await writer.drain()
    async with asyncio.timeout(5):
        while not request_tasks():
            await asyncio.sleep(0.01)
    writer.close()
    async with asyncio.timeout(5):
        while request_tasks():
            await asyncio.sleep(0.01)
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert session["status"] == "pending"


# -- everything at once -----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_random_run_cancel_delete_and_reads_on_thirty_sessions_leave_each_consistent(
    api, http_port, engine
):
    engine.provider = BuiltinProvider(pace=40_000)  # a run lasts long enough to be raced
    sessions = [await api.create(f"topic {i}") for i in range(30)]
    deleted: set[str] = set()
    rng = random.Random(8)

    async def client() -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + 3
        while loop.time() < until:
            session_id = rng.choice(sessions)
            action = rng.choice(["post-run", "get-run", "cancel", "delete", "get", "get"])
            if action == "delete":
                status, _, _ = await api.request("DELETE", f"/api/sessions/{session_id}")
                assert status in (204, 404)
                deleted.add(session_id)
            elif action == "cancel":
                status, _, _ = await api.request("POST", f"/api/sessions/{session_id}/cancel")
                assert status in (200, 404, 409)
            elif action == "get":
                status, _, _ = await api.request("GET", f"/api/sessions/{session_id}")
                assert status in (200, 404)
            else:
                method = "POST" if action == "post-run" else "GET"
                stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", method)
                assert stream.status in (200, 204, 404, 409)
                if stream.status == 200:
                    for _ in range(rng.randint(1, 40)):
                        if await stream.next_event() is None:
                            break
                await stream.aclose()

    await asyncio.gather(*(client() for _ in range(8)))
    for session_id in sessions:
        if session_id in deleted:
            status, _, _ = await api.request("GET", f"/api/sessions/{session_id}")
            assert status == 404, f"deleted session {session_id} came back"
            continue
        await api.wait_for_status(session_id, lambda s: s != "running", timeout=30)
        await assert_consistent(api, http_port, session_id)
    _, health, _ = await api.request("GET", "/health")
    assert health["running"] == 0


@pytest.mark.gen_test
async def test_a_stream_asked_while_another_is_starting_the_session_follows_its_run(
    api, http_port, store, engine
):
    # The start's commit of `running` is seen by a reader before the run is under way here: that
    # reader took the session for one that had ended with no events and answered 204, which tells
    # EventSource to stop reconnecting. (Seen with 500 streams of one session asked at once.)
    session_id = await api.create()
    committed, go_on = asyncio.Event(), asyncio.Event()
    update = store.update

    async def update_then_stall(session: Any) -> None:
        await update(session)
        if session.id == session_id and session.status.value == "running":
            committed.set()
            await go_on.wait()  # the starter has not been given the loop back yet

    store.update = update_then_stall
    # Its answer comes once the start is through: asked, not awaited.
    starter = asyncio.ensure_future(open_sse(http_port, f"/api/sessions/{session_id}/run", "POST"))
    async with asyncio.timeout(10):
        await committed.wait()
    follower = asyncio.ensure_future(open_sse(http_port, f"/api/sessions/{session_id}/run", "GET"))
    async with asyncio.timeout(10):
        # Answered already (the 204), or waiting its turn behind the starter's hold of the lock.
        while not follower.done() and engine._locks._locks.get(session_id, (None, 0))[1] < 2:
            await asyncio.sleep(0.01)
    go_on.set()
    follower_stream = await asyncio.wait_for(follower, 10)
    assert follower_stream.status == 200
    events = await follower_stream.read_all()
    assert events[-1].type == "final"
    assert (await (await asyncio.wait_for(starter, 10)).read_all())[-1].type == "final"
