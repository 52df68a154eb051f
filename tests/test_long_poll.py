"""GET /api/sessions/{id}/events: long polling, through real HTTP, on every store.

The events are the stream's (same ids, same payloads with the `id` added), from the same log; a
poll with nothing new is held until the next event is committed or `wait` runs out; `done` says the
terminal event has been delivered; a held poll is a connection like any other, is let go when its
client leaves, and is answered at once when the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sys
import time
from typing import Any

import pytest
import requests
import ujson

from tests.providers import GatedProvider
from tests.server_process import PROJECT, ServerProcess
from tests.sse_client import open_sse

DEADLINE = 15.0  # every wait in this file ends by then at the latest
KEYS = "alice:alice-key,bob:bob-key"


async def poll(api, session_id: str, query: str = "", **kwargs: Any) -> tuple[int, Any, Any]:
    return await api.request("GET", f"/api/sessions/{session_id}/events{query}", **kwargs)


async def poll_to_the_end(api, session_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Poll from 0 until `done`; the events, and every answer (without its events)."""
    events: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    after = 0
    async with asyncio.timeout(DEADLINE):
        while True:
            status, body, headers = await poll(api, session_id, f"?after={after}&wait=5")
            assert status == 200, body
            assert headers["Content-Type"].startswith("application/json")
            assert headers["Cache-Control"] == "no-store"
            events += body["events"]
            answers.append({k: v for k, v in body.items() if k != "events"})
            assert body["next_after"] == (body["events"][-1]["id"] if body["events"] else after)
            after = body["next_after"]
            if body["done"]:
                return events, answers


async def until(condition: Any, what: str) -> None:
    """Wait (bounded) for a condition on the server's side."""
    try:
        async with asyncio.timeout(DEADLINE):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"never came to pass: {what}") from None


@pytest.mark.gen_test
async def test_polls_drive_a_run_from_start_to_final_with_the_streams_ids_and_payloads(api, http_port):
    session_id = await api.create("photosynthesis")
    status, started, _ = await api.request("POST", f"/api/sessions/{session_id}/start")
    assert status == 202, started

    events, answers = await poll_to_the_end(api, session_id)

    assert [e["id"] for e in events] == list(range(1, len(events) + 1))  # from 1, no gap, no repeat
    assert events[-1]["type"] == "final"
    assert [a["done"] for a in answers] == [False] * (len(answers) - 1) + [True]
    assert answers[-1]["status"] == "completed"
    assert {a["status"] for a in answers[:-1]} <= {"running", "queued"}

    # The same session's stream, replayed from its start: the same ids, the same payloads.
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run?last_event_id=0")
    assert stream.status == 200
    streamed = [e for e in await stream.read_all() if e.id is not None]
    assert [int(e.id) for e in streamed] == [e["id"] for e in events]
    for polled, sent in zip(events, streamed, strict=True):
        assert next(iter(polled)) == "id"  # put first
        without_id = {k: v for k, v in polled.items() if k != "id"}
        assert list(without_id.items()) == list(sent.json.items())  # same fields, same order

    # After the end: at once, nothing, still done; a position past the end counts as the end.
    last = events[-1]["id"]
    for after in (last, last + 1000):
        status, body, _ = await poll(api, session_id, f"?after={after}&wait=30")
        assert status == 200
        assert body == {"events": [], "next_after": last, "done": True, "status": "completed"}


@pytest.mark.parametrize("store", ["memory"], indirect=True)  # it shows the README, not the stores
@pytest.mark.gen_test
async def test_the_readmes_polling_example_runs_a_lesson_to_its_end(api, http_port):
    readme = (PROJECT / "README.md").read_text()
    section = readme[readme.index("### Long polling") :]
    example = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert example is not None
    code = example.group(1).replace("http://localhost:8080", f"http://127.0.0.1:{http_port}")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(DEADLINE):
        out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "Event: step-start" and lines[-1] == "Event: final"
    assert lines.count("Event: step-complete") == 5


@pytest.mark.gen_test
async def test_a_poll_part_way_gets_the_rest_of_the_log(api):
    session_id = await api.create()
    await api.request("POST", f"/api/sessions/{session_id}/start")
    everything, _ = await poll_to_the_end(api, session_id)
    status, body, _ = await poll(api, session_id, "?after=3")
    assert status == 200
    assert body["events"] == everything[3:]
    assert body["done"] is True and body["next_after"] == everything[-1]["id"]


@pytest.mark.gen_test
async def test_a_held_poll_is_answered_with_the_next_event_once_it_is_committed(api, engine, app):
    gate = GatedProvider()
    engine.provider = gate
    session_id = await api.create()
    await api.request("POST", f"/api/sessions/{session_id}/start")
    async with asyncio.timeout(DEADLINE):
        await gate.reached.wait()
    # Everything up to the held step's first words, read without waiting.
    after = 0
    async with asyncio.timeout(DEADLINE):
        while True:
            _, body, _ = await poll(api, session_id, f"?after={after}&wait=0")
            after = body["next_after"]
            if any(e["data"].get("delta") == "Half of the content... " for e in body["events"]):
                break

    held = asyncio.ensure_future(poll(api, session_id, f"?after={after}&wait=10"))
    await until(lambda: len(app.settings["held_polls"]) == 1, "the poll is held")
    await asyncio.sleep(0.05)  # some time for a wrong early answer to arrive
    assert not held.done(), "a poll with nothing new was answered before any event"
    opened = time.monotonic()
    gate.gate.set()
    status, body, _ = await held
    print(f"held poll answered {1000 * (time.monotonic() - opened):.1f} ms after the gate opened")
    assert status == 200
    assert body["events"][0]["id"] == after + 1  # the event the gate let through, and none missed
    assert body["events"][0]["type"] in ("step-delta", "step-complete")
    assert body["status"] == "running" and body["done"] is False
    assert len(app.settings["held_polls"]) == 0
    assert engine.log.subscriber_count == 0


@pytest.mark.gen_test
async def test_a_poll_with_nothing_new_times_out_with_no_events_and_does_not_start_the_session(api):
    session_id = await api.create()
    status, body, _ = await poll(api, session_id, "?wait=0.2")
    assert status == 200
    assert body == {"events": [], "next_after": 0, "done": False, "status": "pending"}
    status, body, _ = await poll(api, session_id, "?wait=0")  # 0: answer at once
    assert (status, body["events"], body["status"]) == (200, [], "pending")
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert session["status"] == "pending"


@pytest.mark.gen_test
async def test_a_cancelled_session_is_done_with_its_error_event(api):
    session_id = await api.create()
    status, _, _ = await api.request("POST", f"/api/sessions/{session_id}/cancel")
    assert status == 200
    status, body, _ = await poll(api, session_id, "?wait=5")
    assert status == 200
    assert [e["type"] for e in body["events"]] == ["error"]
    assert body["events"][0]["data"]["status"] == "cancelled"
    assert (body["done"], body["status"], body["next_after"]) == (True, "cancelled", body["events"][0]["id"])


@pytest.mark.parametrize("config_overrides", [{"poll_max_wait": 0.1}])
@pytest.mark.gen_test
async def test_a_wait_above_poll_max_wait_is_cut_to_it(api):
    session_id = await api.create()
    status, body, _ = await poll(api, session_id, "?wait=3600")
    assert (status, body["events"], body["done"]) == (200, [], False)


BAD_AFTER = ["-1", "abc", "1.5", "9223372036854775808", "%C2%B2", "1" * 20, "0x10", "%201%20x"]
BAD_WAIT = ["-1", "abc", "nan", "inf", "1e999", "1,5", "--1", "%C2%B2", "1_0"]


@pytest.mark.gen_test
async def test_a_bad_after_or_wait_is_a_400_that_says_which(api):
    session_id = await api.create()
    for name, values in (("after", BAD_AFTER), ("wait", BAD_WAIT)):
        for value in values:
            status, body, headers = await poll(api, session_id, f"?{name}={value}")
            assert (status, body["status"]) == (400, 400), (name, value, body)
            assert headers["Content-Type"].startswith("application/json")
            assert body["error"].startswith(name), body


@pytest.mark.gen_test
async def test_an_unknown_session_is_a_404(api):
    status, body, _ = await poll(api, "2c0d5b3e-7f1a-4d7e-9a43-5b1f0e6a9c21", "?wait=5")
    assert (status, body["status"]) == (404, 404)
    assert "not found" in body["error"]


@pytest.mark.gen_test
async def test_a_session_deleted_while_a_poll_waits_is_a_404(api, app):
    session_id = await api.create()
    held = asyncio.ensure_future(poll(api, session_id, "?wait=10"))
    await until(lambda: len(app.settings["held_polls"]) == 1, "the poll is held")
    status, _, _ = await api.request("DELETE", f"/api/sessions/{session_id}")
    assert status == 204
    status, body, _ = await held
    assert (status, body["status"]) == (404, 404)


@pytest.mark.parametrize("config_overrides", [{"api_keys": KEYS}])
@pytest.mark.gen_test
async def test_with_keys_a_poll_takes_the_owners_key_or_the_sessions_stream_token(api):
    alice = {"Authorization": "Bearer alice-key"}
    status, created, _ = await api.request("POST", "/api/sessions", {"topic": "tides"}, headers=alice)
    assert status == 201
    session_id, token = created["id"], created["stream_url"].split("token=", 1)[1]

    status, body, headers = await poll(api, session_id, "?wait=0")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await poll(api, session_id, "?wait=0", headers={"Authorization": "Bearer bob-key"})
    assert status == 404  # another's session is not revealed
    status, body, _ = await poll(api, session_id, "?wait=0", headers=alice)
    assert (status, body["status"]) == (200, "pending")
    status, body, _ = await poll(api, session_id, f"?wait=0&token={token}")
    assert (status, body["status"]) == (200, "pending")

    status, other, _ = await api.request("POST", "/api/sessions", {"topic": "waves"}, headers=alice)
    status, _, _ = await poll(api, other["id"], f"?wait=0&token={token}")
    assert status == 401  # a token opens its own session's events only


@pytest.mark.parametrize("config_overrides", [{"cors_origins": "https://app.example"}])
@pytest.mark.gen_test
async def test_a_poll_from_an_origin_cors_does_not_allow_is_a_403(api):
    session_id = await api.create()
    status, body, _ = await poll(api, session_id, "?wait=0", headers={"Origin": "https://evil.example"})
    assert (status, body["status"]) == (403, 403)
    status, _, _ = await poll(api, session_id, "?wait=0", headers={"Origin": "https://app.example"})
    assert status == 200


@pytest.mark.gen_test
async def test_a_client_that_leaves_mid_hold_leaves_no_subscription_behind(api, http_port, engine, app):
    session_id = await api.create()
    _, writer = await asyncio.open_connection("127.0.0.1", http_port)
    request = f"GET /api/sessions/{session_id}/events?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    await until(lambda: len(app.settings["held_polls"]) == 1, "the poll is held")
    assert engine.log.subscriber_count == 1
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    await until(lambda: engine.log.subscriber_count == 0, "the subscription is let go")
    await until(lambda: len(app.settings["held_polls"]) == 0, "the poll is over")


# -- a real server process: the connection cap and the shutdown ---------------------------------------


def _http(sock: socket.socket, method: str, path: str, body: bytes = b"") -> None:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length body, read within the socket's timeout."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _answered(sock: socket.socket) -> bool:
    """Whether a GET /health on the connection is answered 200 (not closed unanswered by the cap)."""
    try:
        _http(sock, "GET", "/health")
        return _response(sock)[0] == 200
    except (ConnectionError, AssertionError):
        return False


def _refused(port: int) -> bool:
    """Whether a new connection is closed by the server without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        try:
            _http(sock, "GET", "/health")
            return sock.recv(65536) == b""
        except ConnectionError:
            return True


def test_a_held_poll_takes_a_connection_and_is_answered_503_at_once_on_sigterm():
    cap = 16  # the smallest max_connections there is
    server = ServerProcess(f"--max_connections={cap}", "--poll_max_wait=60", "--shutdown_timeout=30")
    others: list[socket.socket] = []
    try:
        poller = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        others.append(poller)
        _http(poller, "POST", "/api/sessions", json.dumps({"topic": "tides"}).encode())
        status, _, body = _response(poller)
        assert status == 201
        session_id = ujson.loads(body)["id"]
        _http(poller, "GET", f"/api/sessions/{session_id}/events?wait=60")  # pending: it is held
        deadline = time.monotonic() + DEADLINE
        with requests.Session() as http:  # one connection, closed once the poll is seen held
            while http.get(f"{server.url}/health", timeout=DEADLINE).json()["subscribers"] != 1:
                assert time.monotonic() < deadline, "the poll was not held"
                time.sleep(0.02)

        # The poll is one of the cap's connections: with cap - 1 more, the next one is refused.
        # Each is answered once and kept open, so it is known to hold its place. One the server
        # refused (the health check's connection was not yet counted closed) is made again: left
        # out, the cap would never be full and every probe below would be served.
        while len(others) < cap:
            assert time.monotonic() < deadline, "the cap's connections could not all be made"
            idle = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
            if _answered(idle):
                others.append(idle)
            else:
                idle.close()
        deadline = time.monotonic() + DEADLINE
        while not _refused(server.port):  # the server counts the last ones as it accepts them
            assert time.monotonic() < deadline, "a connection past the cap was served"
            time.sleep(0.02)

        server.proc.send_signal(15)
        status, headers, body = _response(poller)  # answered now, not after wait=60 or the drain
        assert status == 503
        assert headers["content-type"].startswith("application/json")
        assert int(headers["retry-after"]) >= 1
        assert ujson.loads(body)["status"] == 503
        assert server.proc.wait(DEADLINE) == 0
        assert "Traceback" not in server.log_text()
    finally:
        for sock in others:
            sock.close()
        server.kill()
