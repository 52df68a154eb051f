"""GET /metrics: scraped before and after real runs through the real HTTP server, parsed as Prometheus
parses it, and the figures checked against what the runs did; who may scrape; metrics_port."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import tornado.netutil
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpserver import HTTPServer

from core.events import Event
from core.models import STEP_NAMES
from handlers.metrics import is_loopback_address, metrics_app, route_label
from server import make_app
from tests.fake_openai import Reply
from tests.server_process import PROJECT, ServerProcess
from tests.test_llm_provider import llm
from tests.test_stream import run_to_end
from workflow.eventlog.subscription import Subscription

KEYS = "alice:alice-key,root:root-key:admin"
ALICE = {"Authorization": "Bearer alice-key"}
ROOT = {"Authorization": "Bearer root-key"}
with_keys = pytest.mark.parametrize("config_overrides", [{"api_keys": KEYS}])


class Scrape:
    """One scrape's samples, as Prometheus' text parser reads them."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels` (0 if there are none)."""
        return sum(
            value
            for sample, have, value in self.samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {have[label] for sample, have, _ in self.samples if sample == name and label in have}


async def scrape(api, headers: dict[str, str] | None = None) -> Scrape:
    status, body, response_headers = await api.request("GET", "/metrics", headers=headers or {})
    assert status == 200, body
    assert response_headers["Content-Type"] == CONTENT_TYPE_LATEST
    return Scrape(body.decode())


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def frame_bytes(events) -> int:
    """The bytes of the stream's body as the server wrote them: `retry:`, then each event's frame."""
    total = len(b"retry: 3000\n\n")
    for event in events:
        head = f"id: {event.id}\n" if event.id is not None else ""
        total += len(f"{head}data: {event.data}\n\n".encode())
    return total


# -- a run, counted --------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_run_moves_every_figure_by_exactly_what_it_did(api, http_port, store, engine):
    before = await scrape(api)
    session_id = await api.create("photosynthesis")
    stream_events = await run_to_end(http_port, session_id)
    status, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert status == 200 and session["status"] == "completed"
    assert (await api.request("GET", "/api/sessions/no-such-session/result"))[0] == 404
    assert (await api.request("GET", f"/no/such/path/{session_id}"))[0] == 404
    after = await scrape(api)

    # HTTP: by route pattern, method and status; the first scrape is counted, the second not yet.
    requests_total = "orchestrator_http_requests_total"
    for route, method, code in [
        ("/api/sessions", "POST", "201"),
        ("/api/sessions/{id}/run", "POST", "200"),
        ("/api/sessions/{id}", "GET", "200"),
        ("/api/sessions/{id}/result", "GET", "404"),
        ("unmatched", "GET", "404"),
        ("/metrics", "GET", "200"),
    ]:
        assert moved(before, after, requests_total, route=route, method=method, status=code) == 1, route
    assert after.value(requests_total) - before.value(requests_total) == 6
    assert not any(session_id in str(labels) for _, labels, _ in after.samples)  # never a raw path
    # Latency of answers, not of the stream (it lasts as long as the client reads): that has its own.
    duration = "orchestrator_http_request_duration_seconds_count"
    assert moved(before, after, duration, route="/api/sessions", method="POST") == 1
    assert moved(before, after, duration, route="/api/sessions/{id}/run") == 0
    assert moved(before, after, "orchestrator_sse_stream_duration_seconds_count") == 1

    # The event log: every event of the session committed once, and delivered once to the one stream.
    logged = [event for event in stream_events if event.id is not None]
    last_event_id = (await engine.get_session(session_id)).last_event_id
    assert last_event_id == len(logged) == int(logged[-1].id)
    appended = "orchestrator_events_appended_total"
    assert moved(before, after, appended) == last_event_id
    for kind, count in [("step-start", 5), ("step-complete", 5), ("final", 1), ("error", 0)]:
        assert moved(before, after, appended, type=kind) == count, kind
    deltas = sum(1 for event in logged if event.type == "step-delta")
    assert moved(before, after, appended, type="step-delta") == deltas
    assert moved(before, after, "orchestrator_events_delivered_total") == last_event_id
    assert moved(before, after, "orchestrator_sse_sent_bytes_total") == frame_bytes(stream_events)
    assert moved(before, after, "orchestrator_sse_streams_open") == 0
    assert moved(before, after, "orchestrator_sse_cut_off_total") == 0

    # Steps: one duration each, by the provider that wrote it.
    steps = "orchestrator_step_duration_seconds_count"
    for name in STEP_NAMES:
        assert moved(before, after, steps, step=name, provider="builtin", outcome="completed") == 1, name
    assert moved(before, after, steps) == 5
    assert moved(before, after, "orchestrator_step_errors_total") == 0
    assert moved(before, after, "orchestrator_model_tokens_total") == 0  # the built-in one uses no model

    # Read at scrape time, from this server's engine and store.
    assert after.value("orchestrator_sessions", status="completed") == 1
    assert after.value("orchestrator_sessions") == 1
    assert after.value("orchestrator_running_sessions") == 0
    assert after.value("orchestrator_queued_sessions") == 0
    assert after.value("orchestrator_subscribers") == 0
    assert after.value("orchestrator_store_writable") == 1

    # The SQLite writer: one histogram sample per group commit; every write is in one of them.
    commits = moved(before, after, "orchestrator_store_commit_duration_seconds_count")
    batched = moved(before, after, "orchestrator_store_commit_batch_size_sum")
    if store.kind == "sqlite":
        assert commits >= 1 and moved(before, after, "orchestrator_store_commit_batch_size_count") == commits
        # The session's creation, and each event saved with its state (11), are writes of their own;
        # at full speed a step's deltas go many to a write.
        assert batched >= 1 + 11
        assert after.value("orchestrator_store_size_bytes") > 0
    else:
        assert commits == batched == 0


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(llm_prompt_price=1.0, llm_completion_price=2.0))
async def test_a_model_run_counts_its_tokens_and_their_cost_by_provider(api, http_port, model):
    before = await scrape(api)
    session_id = await api.create("tides")
    events = await run_to_end(http_port, session_id)
    assert events[-1].type == "final"
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    after = await scrape(api)

    usage = session["metadata"]["usage"]
    tokens = "orchestrator_model_tokens_total"
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert moved(before, after, tokens, provider="openai", kind="prompt") == usage["prompt_tokens"]
    assert moved(before, after, tokens, provider="openai", kind="completion") == usage["completion_tokens"]
    assert moved(before, after, "orchestrator_model_cost_total", provider="openai") == pytest.approx(
        usage["cost"]
    )
    assert moved(before, after, "orchestrator_model_retries_total") == 0
    steps = "orchestrator_step_duration_seconds_count"
    assert moved(before, after, steps, provider="openai", outcome="completed") == 5


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(retries=1))
async def test_retries_and_a_failed_step_are_counted_by_provider_step_and_reason(api, http_port, model):
    model.script(Reply.error(503, "overloaded"), times=5)
    before = await scrape(api)
    session_id = await api.create("tides")
    events = await run_to_end(http_port, session_id)
    assert events[-1].type == "error"
    after = await scrape(api)

    retries = "orchestrator_model_retries_total"
    assert moved(before, after, retries, provider="openai", step="analyze-topic") == 1
    assert moved(before, after, retries) == 1
    errors = "orchestrator_step_errors_total"
    assert moved(before, after, errors, step="analyze-topic", provider="openai", reason="provider") == 1
    assert moved(before, after, errors) == 1
    steps = "orchestrator_step_duration_seconds_count"
    assert moved(before, after, steps, step="analyze-topic", outcome="failed") == 1
    assert moved(before, after, steps) == 1  # the other steps never ran
    assert after.value("orchestrator_sessions", status="failed") == 1
    assert moved(before, after, "orchestrator_events_appended_total", type="error") == 1


def test_a_reader_cut_off_for_falling_behind_is_counted():
    before = Scrape(_render())
    subscription = Subscription("s", limit=2)
    for event_id in (1, 2, 3):
        subscription.offer(Event(event_id, "step-delta", "s", b"id: 1\ndata: {}\n\n"))
    after = Scrape(_render())
    assert subscription.closed
    assert moved(before, after, "orchestrator_sse_cut_off_total", reason="overflow") == 1
    assert moved(before, after, "orchestrator_sse_cut_off_total", reason="flush_timeout") == 0


def _render() -> str:
    from prometheus_client import generate_latest

    from core.metrics import REGISTRY

    return generate_latest(REGISTRY).decode()


@pytest.mark.gen_test
async def test_process_figures_are_there(api):
    after = await scrape(api)
    assert after.value("process_resident_memory_bytes") > 0
    assert after.value("process_open_fds") > 0
    assert after.label_values("python_info", "implementation")


# -- route labels ----------------------------------------------------------------------------------


def test_a_route_is_labelled_by_its_pattern_as_the_openapi_document_names_it(app):
    assert route_label(r"/api/sessions/([^/]+)/run$") == "/api/sessions/{id}/run"
    assert route_label(r"/api/sessions/([^/]+)/images/([^/]+)$") == "/api/sessions/{id}/images/{name}"
    assert route_label(r"/api/sessions/([^/]+)/lesson\.md$") == "/api/sessions/{id}/lesson.md"
    assert route_label(r"/()$") == "/"
    assert route_label(r"/web/(.+)$") == "/web/{path}"
    assert route_label(r"/metrics$") == "/metrics"
    labels = [route_label(rule.matcher.regex.pattern) for rule in app.wildcard_router.rules]
    assert all("{}" not in label for label in labels), labels  # every route is documented


# -- who may scrape --------------------------------------------------------------------------------


def test_loopback_is_127_0_0_0_8_and_1_and_their_ipv4_mapped_form_only():
    for address in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"):
        assert is_loopback_address(address), address
    for address in ("192.0.2.2", "10.0.0.1", "fd00::2", "::ffff:192.0.2.2", "", None, "localhost", "unix"):
        assert not is_loopback_address(address), address


@with_keys
@pytest.mark.gen_test
async def test_with_keys_a_scrape_from_this_machine_needs_none(api):
    await scrape(api)  # no key
    await scrape(api, ALICE)  # any valid key: still this machine
    status, body, headers = await api.request("GET", "/metrics", headers={"Authorization": "Bearer nope"})
    assert (status, body["status"]) == (401, 401)  # a wrong key is wrong wherever it comes from
    assert headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.gen_test
async def test_no_page_in_a_browser_may_read_the_metrics(api):
    status, _, headers = await api.request("GET", "/metrics", headers={"Origin": "https://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    status, _, headers = await api.request(
        "OPTIONS",
        "/metrics",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert status == 204 and "Access-Control-Allow-Origin" not in headers
    assert headers["X-Content-Type-Options"] == "nosniff"


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, that a server can listen on; or None."""
    candidates = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, contextlib.suppress(OSError):
        probe.connect(("198.51.100.1", 9))  # no packet is sent: this only picks the outgoing address
        candidates.append(probe.getsockname()[0])
    with contextlib.suppress(OSError):
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    for address in candidates:
        if is_loopback_address(address):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, 0))
            except OSError:
                continue
        return address
    return None


@pytest.fixture
def outside() -> str:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address but loopback to be reached from")
    return address


@pytest.fixture
def listen_on(io_loop) -> Iterator[Any]:
    """Serve an application on an address the test names; the servers are closed afterwards."""
    servers: list[HTTPServer] = []

    def listen(app: Any, address: str) -> str:
        server = HTTPServer(app)
        sockets = tornado.netutil.bind_sockets(0, address)
        server.add_sockets(sockets)
        servers.append(server)
        return f"http://{address}:{sockets[0].getsockname()[1]}"

    yield listen
    for server in servers:
        server.stop()
        io_loop.run_sync(server.close_all_connections, timeout=10)


@with_keys
@pytest.mark.gen_test
async def test_from_another_address_a_scrape_needs_an_admin_key(
    config, engine, http_client, outside, listen_on
):
    # The service's own app, on a real address of this machine that is not loopback: the client's
    # address is then that one. X-Real-IP is not trusted (no xheaders), so it cannot pose as loopback.
    url = listen_on(make_app(config, engine), outside) + "/metrics"

    async def get(headers: dict[str, str]) -> Any:
        return await http_client.fetch(url, headers=headers, raise_error=False, request_timeout=15)

    for headers in ({}, {"X-Real-IP": "127.0.0.1", "X-Forwarded-For": "127.0.0.1"}):
        refused = await get(headers)
        assert refused.code == 401 and b'"status":401' in refused.body
        assert refused.headers["Content-Type"].startswith("application/json")
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    forbidden = await get(ALICE)
    assert forbidden.code == 403 and b"admin" in forbidden.body
    allowed = await get(ROOT)
    assert allowed.code == 200 and allowed.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert Scrape(allowed.body.decode()).value("orchestrator_http_requests_total", status="401") >= 2


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"allowed_hosts": "*", "allow_anonymous": True}])
async def test_without_keys_a_scrape_from_another_address_is_refused_saying_what_works(
    config, engine, http_client, outside, listen_on
):
    url = listen_on(make_app(config, engine), outside) + "/metrics"
    refused = await http_client.fetch(url, raise_error=False, request_timeout=15)
    assert refused.code == 403 and b"metrics_port" in refused.body
    assert refused.headers["Content-Type"].startswith("application/json")


# -- metrics_port ----------------------------------------------------------------------------------


@with_keys
@pytest.mark.gen_test
async def test_metrics_port_serves_metrics_alone_without_keys(
    config, engine, http_client, outside, listen_on
):
    settings = dataclasses.replace(config, metrics_host=outside)
    base = listen_on(metrics_app(settings, engine), outside)
    response = await http_client.fetch(base + "/metrics", raise_error=False, request_timeout=15)
    assert response.code == 200 and response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert "Access-Control-Allow-Origin" not in response.headers
    assert Scrape(response.body.decode()).value("orchestrator_sessions") == 0
    for path, code in (("/api/sessions", 404), ("/health", 404)):
        other = await http_client.fetch(base + path, raise_error=False, request_timeout=15)
        assert other.code == code and other.headers["Content-Type"].startswith("application/json")
    wrong = await http_client.fetch(base + "/metrics", method="DELETE", raise_error=False, request_timeout=15)
    assert wrong.code == 405 and b'"status":405' in wrong.body


@pytest.mark.gen_test
async def test_metrics_port_on_loopback_answers_only_to_the_allowed_host_names(
    config, engine, http_client, listen_on
):
    base = listen_on(metrics_app(config, engine), "127.0.0.1")
    assert (await http_client.fetch(base + "/metrics", request_timeout=15)).code == 200
    rebound = await http_client.fetch(
        base + "/metrics", headers={"Host": "evil.example"}, raise_error=False, request_timeout=15
    )
    assert rebound.code == 403 and b"evil.example" in rebound.body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_server_serves_metrics_port_and_stops_it_with_itself():
    port = free_port()
    server = ServerProcess(f"--metrics_port={port}")
    try:
        own = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=20)
        assert own.status_code == 200 and own.headers["Content-Type"] == CONTENT_TYPE_LATEST
        assert "orchestrator_sessions" in own.text
        main = requests.get(server.url + "/metrics", timeout=20)
        assert main.status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/api/sessions", timeout=20).status_code == 404
        assert server.terminate(timeout=30) == 0
    finally:
        server.kill()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_a_metrics_port_that_cannot_be_bound_stops_the_start_with_a_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "server.py", "--port=0", "--store=memory", f"--metrics_port={port}"],
            cwd=PROJECT,
            env={k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 2, done.stderr
    assert f"metrics_port: cannot listen on 127.0.0.1:{port}" in done.stderr
