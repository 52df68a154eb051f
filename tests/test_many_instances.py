"""Several instances on one Redis behind a round-robin proxy, as real processes: a session created on
one is streamed from another and resumed on a third with the same ids; a killed instance's runs are
taken over by the others from their checkpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from client.sse import SSEParser
from tests.contract_examples import CONTRACT_PYTHON_EXAMPLE
from tests.server_process import ServerProcess
from tests.tcp_proxy import RoundRobinProxy
from tools.redis_server import RedisServer, require_redis_server

LEASE = 1.5  # seconds: a dead instance's runs are taken over within about twice this


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), executable=require_redis_server()).start()
    yield server
    server.stop()


def instances(redis: RedisServer, count: int, *extra: str) -> list[ServerProcess]:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    shared = (
        "--store=redis",
        f"--redis_url={redis.url}",
        f"--redis_prefix={prefix}",
        f"--lease_time={LEASE}",
    )
    return [ServerProcess(*shared, f"--instance_id=instance-{n}", *extra) for n in range(count)]


def create(url: str, topic: str, **body: Any) -> str:
    answer = requests.post(f"{url}/api/sessions", json={"topic": topic, **body}, timeout=10)
    assert answer.status_code in (201, 202), answer.text
    return str(answer.json()["id"])


def session(url: str, session_id: str) -> dict[str, Any]:
    return dict(requests.get(f"{url}/api/sessions/{session_id}", timeout=10).json())


def stop_all(servers: list[ServerProcess]) -> None:
    for server in servers:
        server.kill()


def read_events(
    url: str, last_id: int | None, limit: int | None, timeout: float = 30
) -> list[dict[str, Any]]:
    """GET /run as EventSource does (Last-Event-ID when resuming); at most `limit` logged events,
    then the connection is dropped, as a flaky network would."""
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    got: list[dict[str, Any]] = []
    parser = SSEParser()
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as answer:
        if answer.status_code == 204:
            return got
        assert answer.status_code == 200, answer.text
        for chunk in answer.iter_content(None):
            for event in parser.feed(chunk):
                if event.id is None:
                    continue
                data = json.loads(event.data)
                data["id"] = int(event.id)
                got.append(data)
                if data["type"] in ("final", "error") or (limit is not None and len(got) >= limit):
                    return got
    return got


def follow(
    url: str, session_id: str, per_connection: int | None, deadline: float = 120
) -> list[dict[str, Any]]:
    """Every event of the session, reconnecting with the last id after each `per_connection` events."""
    seen: list[dict[str, Any]] = []
    stop = time.monotonic() + deadline
    while not seen or seen[-1]["type"] not in ("final", "error"):
        assert time.monotonic() < stop, f"the stream did not end; got {len(seen)} events"
        last = seen[-1]["id"] if seen else None
        seen += read_events(f"{url}/api/sessions/{session_id}/run", last, per_connection)
    return seen


def test_created_on_one_streamed_from_another_resumed_on_a_third_with_the_same_ids(redis: RedisServer):
    servers = instances(redis, 3, "--pace=3000")
    proxy = RoundRobinProxy([s.port for s in servers])
    try:
        session_id = create(servers[0].url, "tides")
        # Every connection through the proxy lands on the next instance: the first starts the
        # session there, and each reconnect after 15 events resumes on another one.
        events = follow(proxy.url, session_id, per_connection=15)
        ids = [e["id"] for e in events]
        assert ids == list(range(1, len(ids) + 1)), "a gap or a repeat"
        assert events[-1]["type"] == "final"
        assert len(set(proxy.served)) == 3  # all three served part of it
        for server in servers:  # every instance tells the same story
            assert session(server.url, session_id)["status"] == "completed"
    finally:
        proxy.close()
        stop_all(servers)


def test_the_runs_of_a_killed_instance_are_finished_by_the_others_with_contiguous_ids(redis: RedisServer):
    servers = instances(redis, 3, "--pace=1500")
    try:
        first = servers[0]
        ids = [
            requests.post(
                f"{first.url}/api/sessions", json={"topic": f"topic {n}", "start": True}, timeout=10
            ).json()["id"]
            for n in range(10)
        ]
        # Let them get into their steps, then kill the instance running them, mid-step.
        deadline = time.monotonic() + 30
        while any(
            requests.get(f"{first.url}/api/sessions/{i}", timeout=10).json()["steps"][1]["status"]
            == "pending"
            for i in ids
        ):
            assert time.monotonic() < deadline, "the sessions did not start"
            time.sleep(0.1)
        first.kill()
        for session_id in ids:
            events = follow(servers[1].url, session_id, per_connection=None)
            numbers = [e["id"] for e in events]
            assert numbers == list(range(1, len(numbers) + 1)), "a gap or a repeat"
            assert events[-1]["type"] == "final"
            assert any(e["type"] == "step-retry" for e in events)  # the half-done step started over
        for session_id in ids:
            assert session(servers[2].url, session_id)["status"] == "completed"
    finally:
        stop_all(servers)


def test_workers_share_the_port_and_the_sessions(redis: RedisServer, tmp_path: Path):
    prefix = f"w{uuid.uuid4().hex[:8]}:"
    command = [
        "server.py",
        "--port=0",
        "--pace=2000",
        "--log_format=text",
        "--store=redis",
        f"--redis_url={redis.url}",
        f"--redis_prefix={prefix}",
        "--workers=2",
    ]
    server = ServerProcess(command=command)
    try:
        session_id = create(server.url, "tides")
        with requests.get(f"{server.url}/api/sessions/{session_id}/run", stream=True, timeout=30) as held:
            assert held.status_code == 200
            # /health counts the streams of the process that answers: new connections land on either
            # worker, so both counts are seen while the stream is read, and both know the session.
            counts: set[int] = set()
            for n, _line in enumerate(held.iter_lines()):
                if n % 8 == 0:
                    counts.add(requests.get(f"{server.url}/health", timeout=10).json()["subscribers"])
                    assert session(server.url, session_id)["status"] == "running"
                if counts == {0, 1}:
                    break
            assert counts == {0, 1}, "only one worker answered"
        assert requests.post(f"{server.url}/api/sessions/{session_id}/cancel", timeout=30).status_code == 200
        # The contract's Python example, as written, against the two workers.
        code = CONTRACT_PYTHON_EXAMPLE.replace("localhost:8080", f"127.0.0.1:{server.port}")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "Event: final"
        assert server.terminate() == 0
    finally:
        server.kill()


def test_workers_stop_when_their_parent_is_killed(redis: RedisServer):
    command = ["server.py", "--port=0", "--log_format=text", "--store=redis", f"--redis_url={redis.url}"]
    server = ServerProcess(command=[*command, "--workers=2"])
    try:
        parent = server.proc.pid
        children_file = Path(f"/proc/{parent}/task/{parent}/children")
        workers = [int(pid) for pid in children_file.read_text().split()]
        assert len(workers) == 2
        server.proc.kill()  # no chance to pass anything on
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while alive := [pid for pid in workers if Path(f"/proc/{pid}").exists() and not zombie(pid)]:
            assert time.monotonic() < deadline, f"workers {alive} outlived their parent"
            time.sleep(0.05)
    finally:
        server.kill()


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_a_cancel_sent_to_another_instance_is_recorded_by_the_one_running_the_session(redis: RedisServer):
    servers = instances(redis, 2, "--pace=500")
    try:
        running_on, asked = servers
        session_id = create(running_on.url, "tides", start=True)
        answer = requests.post(f"{asked.url}/api/sessions/{session_id}/cancel", timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        events = follow(asked.url, session_id, per_connection=None)
        assert [e["id"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "error" and events[-1]["data"]["status"] == "cancelled"
        assert "cancelled" in running_on.log_text()  # the instance that ran it recorded it
    finally:
        stop_all(servers)


def wait_for_log(server: ServerProcess, *texts: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = [text for text in texts if text in server.log_text()]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"none of {texts} in the log:\n{server.log_text()[-2000:]}"
        time.sleep(0.05)


def test_a_paused_owner_is_fenced_off_once_another_instance_took_its_run_over(redis: RedisServer):
    servers = instances(redis, 2, "--pace=1500")
    owner, other = servers
    try:
        session_id = create(owner.url, "tides", start=True)
        deadline = time.monotonic() + 30
        while session(owner.url, session_id)["steps"][1]["status"] == "pending":
            assert time.monotonic() < deadline, "the session did not start"
            time.sleep(0.05)
        owner.proc.send_signal(signal.SIGSTOP)  # paused past its lease, as a stalled VM would be
        try:
            wait_for_log(other, f"taking over session {session_id}")
        finally:
            owner.proc.send_signal(signal.SIGCONT)
        # Back, the old owner finds its lease gone (or its next write refused by the fence) and stops.
        wait_for_log(owner, "lease lost", "another instance took the run over")
        events = follow(other.url, session_id, per_connection=None)
        numbers = [e["id"] for e in events]
        assert numbers == list(range(1, len(numbers) + 1)), "a gap, a repeat or a write from the old owner"
        assert events[-1]["type"] == "final"
    finally:
        stop_all(servers)


def test_a_redis_restart_mid_run_loses_nothing_acknowledged_and_the_run_finishes(tmp_path: Path):
    redis = RedisServer(tmp_path / "redis", aof=True, executable=require_redis_server()).start()
    servers = instances(redis, 2, "--pace=1500")
    try:
        session_id = create(servers[0].url, "tides", start=True)
        before = read_events(f"{servers[1].url}/api/sessions/{session_id}/run", None, limit=20)
        held = requests.get(f"{servers[1].url}/api/sessions/{session_id}/run", stream=True, timeout=30)
        redis.kill()  # no goodbye: what it acknowledged is in its append-only file
        # While it is away: what needs Redis is a JSON 503, readiness says so, liveness does not.
        refused = requests.post(f"{servers[0].url}/api/sessions", json={"topic": "x"}, timeout=30)
        assert refused.status_code == 503 and "store cannot be used" in refused.json()["error"], refused.text
        ready = requests.get(f"{servers[0].url}/ready", timeout=30)
        assert ready.status_code == 503 and "cannot be written" in ready.json()["error"]
        health = requests.get(f"{servers[0].url}/health", timeout=30)
        assert health.status_code == 200 and health.json()["store"]["writable"] is False
        redis.start()
        events = follow(servers[1].url, session_id, per_connection=None)
        numbers = [e["id"] for e in events]
        assert numbers == list(range(1, len(numbers) + 1))
        assert [e["id"] for e in before] == numbers[: len(before)]  # what was acknowledged is kept
        assert events[-1]["type"] == "final"
        # The stream that was open through the outage stayed open and delivered the same events.
        parser = SSEParser()
        through = [int(e.id) for chunk in held.iter_content(None) for e in parser.feed(chunk) if e.id]
        held.close()
        assert through == numbers
    finally:
        stop_all(servers)
        redis.stop()


def test_the_contracts_python_example_works_as_written_across_three_instances(redis: RedisServer):
    servers = instances(redis, 3)
    proxy = RoundRobinProxy([s.port for s in servers])
    try:
        code = CONTRACT_PYTHON_EXAMPLE.replace("localhost:8080", f"127.0.0.1:{proxy.port}")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == "Event: connected" and lines[-1] == "Event: final"
        assert lines.count("Event: step-complete") == 5
        assert len(set(proxy.served)) >= 2  # created on one instance, run on another
    finally:
        proxy.close()
        stop_all(servers)


def test_get_run_on_two_instances_at_once_streams_on_both_never_409(redis: RedisServer):
    # GET /run starts a pending session or attaches to it; two instances racing to start the same one
    # must both stream it (the one that lost the race follows the winner's run).
    servers = instances(redis, 2, "--create_rate_limit=100/second")
    try:
        ids = [create(servers[0].url, f"topic {n}") for n in range(12)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(
                    lambda job: read_events(f"{job[0].url}/api/sessions/{job[1]}/run", None, None),
                    [(server, session_id) for session_id in ids for server in servers],
                )
            )
        for events in answers:
            assert [e["id"] for e in events] == list(range(1, len(events) + 1))
            assert events[-1]["type"] == "final"
    finally:
        stop_all(servers)
