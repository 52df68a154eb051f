"""Limits that hold across instances on one Redis: max_running and the first-come-first-served queue
behind it, max_queued, and each caller's rate limits, whichever instance a request lands on."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from redis.asyncio import Redis

from core.errors import Throttled
from handlers.access import RateLimits
from tests.test_many_instances import create, follow, instances, redis, session, stop_all
from tools.redis_server import RedisServer, free_port

__all__ = ["redis"]  # the module's Redis server, shared with tests/test_many_instances.py


def start(url: str, session_id: str) -> requests.Response:
    return requests.post(f"{url}/api/sessions/{session_id}/start", timeout=10)


def first_step_start(events: list[dict[str, Any]]) -> str:
    return next(e["timestamp"] for e in events if e["type"] == "step-start")


def wait_for_status(url: str, session_id: str, wanted: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (shown := session(url, session_id))["status"] != wanted:
        assert time.monotonic() < deadline, f"{session_id} is {shown['status']}, not {wanted}"
        time.sleep(0.05)
    return shown


def test_max_running_and_the_queue_are_the_fleets_whichever_instance_is_asked(redis: RedisServer):
    # One run at a time across three instances, two may wait; each start goes to another instance.
    servers = instances(redis, 3, "--pace=1000", "--max_running=1", "--max_queued=2")
    try:
        first, second, third = (create(s.url, f"topic {n}") for n, s in enumerate(servers))
        assert start(servers[0].url, first).json()["status"] == "running"
        # On another instance, with its own slot free, it still waits: the slot is the fleet's.
        queued = start(servers[1].url, second)
        assert queued.status_code == 202 and queued.json()["status"] == "queued"
        assert queued.json()["queue_position"] == 1
        assert start(servers[2].url, third).json()["queue_position"] == 2
        # A third waiting session is one too many for the fleet: 503, and nothing is kept of it.
        refused = requests.post(
            f"{servers[0].url}/api/sessions", json={"topic": "x", "start": True}, timeout=10
        )
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "30", refused.text
        assert session(servers[2].url, third)["queue_position"] == 2  # any instance knows the order

        # Cancelled on an instance that does not run it, the first frees the slot: the second runs
        # next, and the third moves up and is told so; then it runs once the second is cancelled.
        assert requests.post(f"{servers[2].url}/api/sessions/{first}/cancel", timeout=30).status_code == 200
        wait_for_status(servers[2].url, second, "running")
        assert session(servers[0].url, third)["queue_position"] == 1
        assert requests.post(f"{servers[1].url}/api/sessions/{second}/cancel", timeout=30).status_code == 200
        wait_for_status(servers[1].url, third, "running")
        assert requests.post(f"{servers[0].url}/api/sessions/{third}/cancel", timeout=30).status_code == 200

        first_events, second_events, third_events = (
            follow(servers[n].url, session_id, per_connection=None)
            for n, session_id in enumerate((first, second, third))
        )
        positions = [e["data"]["position"] for e in third_events if e["type"] == "queued"]
        assert positions[0] == 2 and positions[-1] == 1
        for events in (first_events, second_events, third_events):
            assert [e["id"] for e in events] == list(range(1, len(events) + 1))
            assert events[-1]["data"]["status"] == "cancelled"
        # Never two at once: each began only after the one before it had ended.
        assert first_step_start(second_events) >= first_events[-1]["timestamp"]
        assert first_step_start(third_events) >= second_events[-1]["timestamp"]
    finally:
        stop_all(servers)


def test_a_callers_rate_limit_is_counted_across_the_fleet(redis: RedisServer):
    servers = instances(redis, 2, "--create_rate_limit=3/minute")
    try:
        for server in (servers[0], servers[1], servers[0]):
            create(server.url, "tides")
        refused = requests.post(f"{servers[1].url}/api/sessions", json={"topic": "tides"}, timeout=10)
        assert refused.status_code == 429, refused.text
        assert "too many requests" in refused.json()["error"]
        assert refused.headers["RateLimit"].startswith('"creates-0";r=0;')
    finally:
        stop_all(servers)


@pytest.mark.gen_test(timeout=30)
async def test_with_redis_unreachable_each_instance_still_holds_the_limit_on_its_own():
    rates = RateLimits(creates="2/minute")
    nowhere = Redis(port=free_port(), socket_connect_timeout=1)
    rates.share(nowhere, "orch:rate")
    try:
        for _ in range(2):
            await rates.hit("creates", "anon:127.0.0.1")
        with pytest.raises(Throttled):
            await rates.hit("creates", "anon:127.0.0.1")
    finally:
        await nowhere.aclose()
