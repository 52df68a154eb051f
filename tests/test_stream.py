"""The SSE stream, read through a real socket and parsed as EventSource does."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import pytest

from client.sse import SSEParser
from core.models import STEP_NAMES
from tests.providers import FailingProvider, FloodProvider, GatedProvider, StallingProvider
from tests.sse_client import SSEEvent, open_sse

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def types(events: list[SSEEvent]) -> list[str]:
    return [event.type for event in events]


def ids(events: list[SSEEvent]) -> list[int]:
    return [int(event.id) for event in events if event.id is not None]


def without_deltas(events: list[SSEEvent]) -> list[str]:
    return [t for t in types(events) if t != "step-delta"]


EXPECTED_SEQUENCE = (
    ["connected"] + [t for _ in STEP_NAMES for t in ("step-start", "step-complete")] + ["final"]
)


async def run_to_end(http_port: int, session_id: str, method: str = "POST", **kwargs: Any) -> list[SSEEvent]:
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", method, **kwargs)
    assert stream.status == 200
    return await stream.read_all()


@pytest.mark.gen_test
async def test_run_streams_every_step_then_final_with_the_contract_fields(api, http_port):
    session_id = await api.create("photosynthesis")
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in stream.headers
    events = await stream.read_all()
    assert stream.parser.retry == 3000

    assert without_deltas(events) == EXPECTED_SEQUENCE
    connected = events[0]
    assert connected.id is None  # it belongs to this connection, not to the session's log
    assert connected.json["session_id"] == session_id
    assert ids(events) == list(range(1, len(events)))  # every logged event, numbered from 1, no gaps
    assert all(event.event is None for event in events)  # unnamed, so onmessage sees them

    for event in events[1:]:
        body = event.json
        expected_keys = ["type", "session_id", "step_id", "data", "timestamp"]
        assert list(body) == [k for k in expected_keys if k != "step_id" or "step_id" in body]
        assert body["session_id"] == session_id
        assert RFC3339.match(body["timestamp"]), body["timestamp"]

    starts = [e.json for e in events if e.type == "step-start"]
    assert [s["data"] for s in starts] == [
        {"step_name": n, "step_index": i} for i, n in enumerate(STEP_NAMES)
    ]
    assert [s["step_id"] for s in starts] == [f"step-{i}" for i in range(1, 6)]

    for step_id, name in zip([s["step_id"] for s in starts], STEP_NAMES, strict=True):
        deltas = [e.json for e in events if e.type == "step-delta" and e.json["step_id"] == step_id]
        assert deltas, f"{name} sent no step-delta"
        progress = [d["data"]["progress"] for d in deltas]
        assert progress == sorted(progress) and progress[0] >= 0 and progress[-1] == 100
        complete = next(e.json for e in events if e.type == "step-complete" and e.json["step_id"] == step_id)
        assert complete["data"]["step_name"] == name
        assert isinstance(complete["data"]["duration"], int) and complete["data"]["duration"] >= 0
        if name != "generate-images":
            # The deltas are the text as it was produced: together they are the step's output.
            assert "".join(d["data"]["delta"] for d in deltas) == complete["data"]["output"]

    final = events[-1].json
    result = final["data"]["result"]
    assert set(result) == {"lesson", "images", "summary", "duration", "completed_at", "metadata"}
    assert result["metadata"] == {"provider": "builtin", "model": None}  # who wrote it: no model
    assert result["lesson"].startswith("# Photosynthesis")
    assert "Photosynthesis" in result["summary"] or "photosynthesis" in result["summary"]
    assert isinstance(result["duration"], int) and result["duration"] > 0  # nanoseconds
    assert RFC3339.match(result["completed_at"])
    assert set(result["images"]) == {"outline-map.svg", "key-terms.svg"}
    assert stream.ended


@pytest.mark.gen_test
async def test_result_and_session_agree_with_the_final_event(api, http_port):
    session_id = await api.create("the French Revolution")
    events = await run_to_end(http_port, session_id)
    final = events[-1].json["data"]["result"]
    status, result, _ = await api.request("GET", f"/api/sessions/{session_id}/result")
    assert status == 200
    assert result == final
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert session["status"] == "completed"
    assert session["result"] == final
    assert [s["status"] for s in session["steps"]] == ["completed"] * 5
    outputs = {
        e.json["data"]["step_name"]: e.json["data"]["output"] for e in events if e.type == "step-complete"
    }
    assert {s["name"]: s["output"] for s in session["steps"]} == outputs
    for step in session["steps"]:
        assert RFC3339.match(step["started_at"]) and RFC3339.match(step["completed_at"])
        assert step["duration"] >= 0


@pytest.mark.gen_test
async def test_post_run_on_a_started_session_gets_409(api, http_port):
    session_id = await api.create()
    await run_to_end(http_port, session_id)
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
    assert stream.status == 409
    body = (await stream.body()).decode()
    assert '"status":409' in body and "already started" in body


@pytest.mark.gen_test
async def test_get_run_starts_a_pending_session_like_eventsource_does(api, http_port):
    session_id = await api.create()
    events = await run_to_end(http_port, session_id, method="GET")
    assert without_deltas(events) == EXPECTED_SEQUENCE


@pytest.mark.gen_test
async def test_reconnect_with_last_event_id_resumes_with_no_gap_and_no_duplicate(api, http_port):
    session_id = await api.create()
    full = await run_to_end(http_port, session_id)
    last_id = full[-1].id
    for cut in (1, 7, int(last_id) - 1):
        for headers, query in (({"Last-Event-ID": str(cut)}, ""), ({}, f"?last_event_id={cut}")):
            stream = await open_sse(http_port, f"/api/sessions/{session_id}/run{query}", headers=headers)
            resumed = [e for e in await stream.read_all() if e.id is not None]
            assert ids(resumed) == list(range(cut + 1, int(last_id) + 1))
            assert [e.data for e in resumed] == [e.data for e in full if e.id and int(e.id) > cut]


@pytest.mark.gen_test
async def test_reconnect_after_final_gets_204(api, http_port):
    session_id = await api.create()
    full = await run_to_end(http_port, session_id)
    stream = await open_sse(
        http_port, f"/api/sessions/{session_id}/run", headers={"Last-Event-ID": full[-1].id}
    )
    assert stream.status == 204
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run?last_event_id={full[-1].id}")
    assert stream.status == 204


@pytest.mark.gen_test
async def test_a_late_subscriber_gets_the_whole_log_replayed(api, http_port):
    session_id = await api.create()
    full = await run_to_end(http_port, session_id)
    replay = await run_to_end(http_port, session_id, method="GET")
    assert [e.data for e in replay[1:]] == [e.data for e in full[1:]]


@pytest.mark.gen_test
async def test_a_malformed_last_event_id_is_a_400(api, http_port):
    session_id = await api.create()
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", headers={"Last-Event-ID": "abc"})
    assert stream.status == 400
    assert b"Last-Event-ID" in await stream.body()


@pytest.mark.gen_test
async def test_run_of_an_unknown_session_is_a_404(api, http_port):
    for method in ("GET", "POST"):
        stream = await open_sse(http_port, "/api/sessions/nope/run", method)
        assert stream.status == 404
        assert b"not found" in await stream.body()


async def start_held_run(api, http_port, engine):
    """A session whose create-content step has begun and waits for the test to open its gate."""
    gate = GatedProvider()
    engine.provider = gate
    session_id = await api.create()
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
    async with asyncio.timeout(10):
        await gate.reached.wait()
    return gate, session_id, stream


async def server_side_of_a_held_stream(api, http_port, engine, app):
    """A held run's stream once its first step began, and the server's HTTP connection of it."""
    gate, _, stream = await start_held_run(api, http_port, engine)
    await stream.read_until("step-start")
    [handler] = list(app.settings["open_streams"])
    return gate, stream, handler.request.connection


@pytest.mark.gen_test
async def test_events_leave_at_once_without_waiting_for_the_client_to_acknowledge(
    api, http_port, engine, app
):
    # With Nagle's algorithm on, an event written while the last is unacknowledged waited for the
    # client's delayed ACK (40 to 200 ms on Linux): p99 latency to 1,000 streams was 185 ms.
    gate, stream, connection = await server_side_of_a_held_stream(api, http_port, engine, app)
    assert connection.stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    gate.gate.set()
    assert (await stream.read_all())[-1].type == "final"


@pytest.mark.gen_test
async def test_an_http_1_0_client_gets_the_events_unchunked_until_the_connection_closes(api, http_port):
    # No chunked encoding in HTTP/1.0: live events written straight to the socket go out bare.
    session_id = await api.create("tides")
    reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
    writer.write(f"GET /api/sessions/{session_id}/run HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    async with asyncio.timeout(30):
        answer = await reader.read()  # to the end: the server closes the connection after `final`
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head.lower()
    fields = {line.partition(b":")[0] for line in body.split(b"\n") if line}
    assert fields == {b"retry", b"id", b"data"}  # frames alone: no chunk sizes between them
    events = [SSEEvent(e.data, e.id, e.event) for e in SSEParser().feed(body)]
    assert without_deltas(events) == EXPECTED_SEQUENCE
    assert ids(events) == list(range(1, len(events)))


@pytest.mark.gen_test
async def test_two_subscribers_see_the_same_sequence_live(api, http_port, engine):
    gate, session_id, first = await start_held_run(api, http_port, engine)
    second = await open_sse(http_port, f"/api/sessions/{session_id}/run")
    gate.gate.set()
    a, b = await asyncio.gather(first.read_all(), second.read_all())
    assert [e.data for e in a[1:]] == [e.data for e in b[1:]]
    assert a[-1].type == "final"


@pytest.mark.gen_test
async def test_the_run_continues_when_the_client_disconnects(api, http_port, engine):
    gate, session_id, stream = await start_held_run(api, http_port, engine)
    await stream.read_until("step-start")
    stream.close()
    gate.gate.set()
    session = await api.wait_for_status(session_id, lambda s: s != "running")
    assert session["status"] == "completed"
    async with asyncio.timeout(10):
        while (await engine.stats())["subscribers"]:
            await asyncio.sleep(0.01)


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"subscriber_buffer": 300, "flush_timeout": 30}])
async def test_a_subscriber_that_stops_reading_is_cut_off_while_another_keeps_up(api, http_port, engine):
    # Far more than socket buffers hold (a few MB here) and than the 300 events a reader may lag.
    engine.provider = FloodProvider(chunks=1200, size=16 * 1024)
    session_id = await api.create()
    slow = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST", receive_buffer=4096)
    fast = await open_sse(http_port, f"/api/sessions/{session_id}/run")
    events = await fast.read_all(timeout=60)
    assert events[-1].type == "final"
    # The slow one was cut off: what it can still read ends before the final event.
    slow_events = await slow.read_all(timeout=30)
    assert slow_events[-1].type != "final"
    # And it can resume from where it got to, with no gap.
    last = max(ids(slow_events))
    resumed = await open_sse(
        http_port, f"/api/sessions/{session_id}/run", headers={"Last-Event-ID": str(last)}
    )
    rest = [e for e in await resumed.read_all(timeout=60) if e.id is not None]
    assert ids(rest)[0] == last + 1 and rest[-1].type == "final"


@pytest.mark.gen_test
async def test_cancel_mid_step_ends_the_stream_with_a_cancelled_error(api, http_port, engine):
    _, session_id, stream = await start_held_run(api, http_port, engine)
    status, session, _ = await api.request("POST", f"/api/sessions/{session_id}/cancel")
    assert status == 200
    assert session["status"] == "cancelled"
    events = await stream.read_all()
    assert events[-1].type == "error"
    assert events[-1].json["data"]["status"] == "cancelled"
    steps = {s["name"]: s["status"] for s in session["steps"]}
    assert steps == {
        "analyze-topic": "completed",
        "generate-outline": "completed",
        "create-content": "failed",
        "generate-images": "skipped",
        "finalize-lesson": "skipped",
    }
    status, body, _ = await api.request("POST", f"/api/sessions/{session_id}/cancel")
    assert status == 409
    status, body, _ = await api.request("GET", f"/api/sessions/{session_id}/result")
    assert status == 400 and "cancelled" in body["error"]


@pytest.mark.gen_test
async def test_a_failing_step_sends_step_error_then_error_and_the_session_fails(api, http_port, engine):
    engine.provider = FailingProvider()
    session_id = await api.create()
    events = await run_to_end(http_port, session_id)
    assert without_deltas(events)[-3:] == ["step-start", "step-error", "error"]
    step_error = events[-2].json
    assert step_error["step_id"] == "step-3"
    assert step_error["data"]["step_name"] == "create-content"
    assert "refused the connection" in step_error["data"]["error"]
    assert events[-1].json["data"]["status"] == "failed"
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert session["status"] == "failed"
    step = session["steps"][2]
    assert step["status"] == "failed" and "refused the connection" in step["error"]
    assert "create-content" in session["metadata"]["error"]


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"step_timeout": 0.2}])
async def test_a_step_that_runs_past_its_timeout_fails_the_session(api, http_port, engine):
    engine.provider = StallingProvider()
    session_id = await api.create()
    events = await run_to_end(http_port, session_id)
    assert events[-2].type == "step-error"
    assert "timed out after 0.2 s" in events[-2].json["data"]["error"]
    assert events[-1].type == "error"


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"heartbeat_interval": 0.05}])
async def test_an_idle_stream_gets_heartbeat_comments(api, http_port, engine):
    gate, _, stream = await start_held_run(api, http_port, engine)
    await stream.wait_for_comment("heartbeat")
    gate.gate.set()
    assert (await stream.read_all())[-1].type == "final"


@pytest.mark.gen_test
async def test_many_sessions_run_at_once(api, http_port):
    session_ids = [await api.create(f"topic number {i}") for i in range(10)]
    streams = [await open_sse(http_port, f"/api/sessions/{sid}/run", "POST") for sid in session_ids]
    results = await asyncio.gather(*(s.read_all(timeout=60) for s in streams))
    assert all(events[-1].type == "final" for events in results)
    lessons = {events[-1].json["data"]["result"]["lesson"] for events in results}
    assert len(lessons) == 10
