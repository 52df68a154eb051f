"""The work queue: max_running sessions run, the rest wait in FIFO order with `queued` events; starts
without a stream (202); a full queue is a 503 with Retry-After; the queue survives a restart."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import requests

from client.sse import SSEParser
from tests.providers import GatedProvider
from tests.server_process import ServerProcess
from tests.sse_client import SSEConnection, open_sse
from tests.test_metrics import moved, scrape

QUEUE = {"max_running": 1, "max_queued": 3}


@pytest.fixture
def provider() -> GatedProvider:
    """create-content of the first session waits until the test opens the gate: it holds the slot."""
    return GatedProvider()


@pytest.fixture
def config_overrides() -> dict:
    return QUEUE


async def hold_the_slot(api, http_port, provider) -> tuple[str, SSEConnection]:
    session_id = await api.create("the session that runs")
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
    await asyncio.wait_for(provider.reached.wait(), 10)
    return session_id, stream


async def queued_stream(api, http_port, topic: str) -> tuple[str, SSEConnection, int]:
    session_id = await api.create(topic)
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
    assert stream.status == 200
    queued = await stream.read_until("queued")
    return session_id, stream, queued.json["data"]["position"]


@pytest.mark.gen_test(timeout=60)
async def test_a_start_beyond_max_running_waits_with_its_position_then_runs_in_turn(api, http_port, provider):
    before = await scrape(api)
    running, first = await hold_the_slot(api, http_port, provider)
    second, second_stream, position = await queued_stream(api, http_port, "the session that waits")
    assert position == 1
    _, session, _ = await api.request("GET", f"/api/sessions/{second}")
    assert session["status"] == "queued" and session["queue_position"] == 1
    _, listed, _ = await api.request("GET", "/api/sessions?status=queued")
    assert [s["id"] for s in listed["sessions"]] == [second]

    provider.gate.set()
    assert (await first.read_all())[-1].type == "final"
    events = await second_stream.read_all()
    logged = [e for e in events if e.id is not None]
    assert [e.type for e in logged[:2]] == ["queued", "step-start"]
    assert [int(e.id) for e in logged] == list(range(1, len(logged) + 1))  # one log, ids unbroken
    assert logged[-1].type == "final"
    _, done, _ = await api.request("GET", f"/api/sessions/{second}")
    assert done["status"] == "completed" and "queue_position" not in done
    _, first_done, _ = await api.request("GET", f"/api/sessions/{running}")
    assert first_done["steps"][-1]["completed_at"] <= done["steps"][0]["started_at"]  # one at a time
    assert moved(before, await scrape(api), "orchestrator_queue_wait_seconds_count") == 1


@pytest.mark.gen_test(timeout=60)
async def test_those_behind_a_cancelled_or_deleted_session_move_up_and_run_in_order(api, http_port, provider):
    _, first = await hold_the_slot(api, http_port, provider)
    queued = [await queued_stream(api, http_port, f"waiting {n}") for n in range(3)]
    assert [position for _, _, position in queued] == [1, 2, 3]
    (a, _, _), (b, b_stream, _), (c, c_stream, _) = queued

    status, cancelled, _ = await api.request("POST", f"/api/sessions/{a}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    assert (await b_stream.read_until("queued")).json["data"]["position"] == 1
    assert (await c_stream.read_until("queued")).json["data"]["position"] == 2
    status, _, _ = await api.request("DELETE", f"/api/sessions/{b}")
    assert status == 204
    assert (await c_stream.read_until("queued")).json["data"]["position"] == 1

    provider.gate.set()
    await first.read_all()
    assert (await c_stream.read_all())[-1].type == "final"
    _, session, _ = await api.request("GET", f"/api/sessions/{c}")
    assert session["status"] == "completed"


@pytest.mark.gen_test(timeout=60)
@pytest.mark.expect_errors(r"503 POST /api/sessions")
async def test_a_full_queue_answers_503_with_retry_after_and_keeps_nothing_it_refused(
    api, http_port, provider
):
    _, first = await hold_the_slot(api, http_port, provider)
    waiting = [await queued_stream(api, http_port, f"waiting {n}") for n in range(QUEUE["max_queued"])]
    refused = await api.create("one too many")
    stream = await open_sse(http_port, f"/api/sessions/{refused}/run", "POST")
    assert stream.status == 503 and stream.headers["retry-after"] == "30"
    assert "are waiting" in (await stream.body()).decode()
    _, session, _ = await api.request("GET", f"/api/sessions/{refused}")
    assert session["status"] == "pending"  # not started: it can be run later

    status, body, headers = await api.request("POST", "/api/sessions", {"topic": "unwatched", "start": True})
    assert status == 503 and headers["Retry-After"] == "30" and body["status"] == 503
    _, listed, _ = await api.request("GET", "/api/sessions?limit=100")
    assert "unwatched" not in [s["topic"] for s in listed["sessions"]]  # a refused start leaves nothing
    provider.gate.set()
    await first.read_all()
    for _, stream, _ in waiting:
        assert (await stream.read_all())[-1].type == "final"


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("config_overrides", [{}])
async def test_a_session_started_without_a_stream_runs_unwatched_and_can_be_attached_later(
    api, http_port, provider
):
    provider.gate.set()
    status, created, headers = await api.request("POST", "/api/sessions", {"topic": "tides", "start": True})
    assert status == 202 and created["status"] in ("running", "queued")
    assert headers["Location"] == f"/api/sessions/{created['id']}" and created["stream_url"]
    other = await api.create("volcanoes")
    status, started, _ = await api.request("POST", f"/api/sessions/{other}/start")
    assert status == 202 and started["id"] == other and started["status"] == "running"
    status, again, _ = await api.request("POST", f"/api/sessions/{other}/start")
    assert status == 409 and "already started" in again["error"]

    for session_id in (created["id"], other):
        stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "GET")
        events = await stream.read_all()
        assert events[-1].type == "final"  # the whole log, attached at any point


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{}])
@pytest.mark.parametrize("start", ["yes", 1, None])
async def test_start_must_be_a_boolean(api, start):
    status, body, _ = await api.request("POST", "/api/sessions", {"topic": "tides", "start": start})
    assert status == 400 and body["error"] == "start must be true or false"


def create(url: str, topic: str) -> str:
    answer = requests.post(f"{url}/api/sessions", json={"topic": topic, "start": True}, timeout=10)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def statuses(url: str, ids: list[str]) -> list[str]:
    return [requests.get(f"{url}/api/sessions/{i}", timeout=10).json()["status"] for i in ids]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def test_the_queue_survives_a_restart_in_its_order(tmp_path):
    db = tmp_path / "queue.db"
    # Slow enough that the first session still runs when the service stops.
    # It polls faster than a client should (3 reads each 50 ms): no request rate limit here.
    args = ("--max_running=1", "--pace=3000", "--shutdown_timeout=0", "--rate_limit=")
    server = ServerProcess(*args, db=db)
    try:
        ids = [create(server.url, f"topic {n}") for n in range(3)]
        assert statuses(server.url, ids) == ["running", "queued", "queued"]
        assert server.terminate() == 0
    finally:
        server.kill()

    server = ServerProcess(*args, db=db)
    try:
        assert statuses(server.url, ids)[1:] == ["queued", "queued"]
        wait_until(lambda: statuses(server.url, ids) == ["completed"] * 3, 120, "all three completed")
        started = [
            requests.get(f"{server.url}/api/sessions/{i}", timeout=10).json()["steps"][-1]["completed_at"]
            for i in ids
        ]
        assert started == sorted(started)  # first in, first out, across the restart
        # The last one waited behind two: told position 2, then 1, then it ran.
        answer = requests.get(f"{server.url}/api/sessions/{ids[2]}/run", stream=True, timeout=30)
        parser = SSEParser()
        events = []
        for chunk in answer.iter_content(None):
            events += parser.feed(chunk)
        data = [json.loads(e.data) for e in events if e.id is not None]
        queued = [d["data"]["position"] for d in data if d["type"] == "queued"]
        assert queued[0] == 2 and queued[-1] == 1
        assert data[-1]["type"] == "final"
    finally:
        server.kill()
