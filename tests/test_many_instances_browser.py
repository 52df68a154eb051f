"""The contract's JavaScript example, as written, in Chromium against three instances on one Redis behind
a round-robin proxy: the session created on one instance, streamed from another, and resumed on yet
another when the stream is cut, with the browser's EventSource given every event once, in order."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.contract_examples import CONTRACT_JS_EXAMPLE
from tests.server_process import ServerProcess
from tests.tcp_proxy import RoundRobinProxy
from tests.test_many_instances import instances, stop_all

RUN = 30_000  # ms the example may take, create to final (a run here takes about 1.5 s)
CUT_AFTER = 4_000  # bytes of the first stream relayed before it is cut: a dozen events of about 150

# The example stays as written, so what its EventSource is given is watched from outside it: each
# message's id and type, and the stream's URL (for the session id). The listener is added in the
# constructor, before the example sets onmessage, so it has seen a message before the example logs it.
WATCH_EVENT_SOURCE = """() => {
  window.streams = [];
  window.messages = [];
  window.EventSource = class extends EventSource {
    constructor(...args) {
      super(...args);
      window.streams.push(this.url);
      this.addEventListener('message', (event) => {
        window.messages.push({ id: event.lastEventId, type: JSON.parse(event.data).type });
      });
    }
  };
}"""

FETCH_JSON = """async (url) => {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}"""


@pytest.fixture(scope="module")
def servers(redis_server) -> Iterator[list[ServerProcess]]:
    """Three instances for this module's tests. Paced, so that a run (about 1.5 s) is still going when
    a stream cut a few events in has reconnected (after the 200 ms retry hint it is given)."""
    started = instances(redis_server, 3, "--pace=10000", "--sse_retry=200")
    yield started
    stop_all(started)


@dataclass
class Seen:
    """What one run of the example in a page left: what it logged, and what its EventSource got."""

    session_id: str
    logged: list[str]  # the type of each event the example logged ('Event: <type> <data>')
    messages: list[dict[str, str]]  # each message its EventSource was given: id and type
    result: dict[str, Any]  # the page's own GET of the session's result, afterwards

    def ids(self) -> list[int]:
        # `connected` greets each connection and has no id of its own (lastEventId repeats the last).
        return [int(m["id"]) for m in self.messages if m["type"] != "connected"]


def run_the_example(browser: Browser, proxy: RoundRobinProxy) -> Seen:
    # A context of its own: no connection kept open from another test, none kept for the next.
    context = browser.new_context()
    try:
        page = context.new_page()
        logged: list[str] = []
        page.on("console", lambda message: logged.append(message.text))
        # A page of the proxy's origin that runs no script of its own (the service's page would list
        # recent sessions meanwhile), so that the example's requests are the page's only ones.
        page.goto(proxy.url + "/health")
        page.evaluate(WATCH_EVENT_SOURCE)
        # The example uses top-level await, as a module or the console allows: run it as one.
        with page.expect_console_message(lambda m: m.text.startswith("Event: final"), timeout=RUN):
            page.evaluate(f"async () => {{\n{CONTRACT_JS_EXAMPLE}\n}}")
        streams: list[str] = page.evaluate("window.streams")
        assert len(streams) == 1, streams  # one EventSource; its reconnects are its own business
        match = re.search(r"/api/sessions/([^/]+)/run$", streams[0])
        assert match, streams[0]
        session_id = match.group(1)
        result = page.evaluate(FETCH_JSON, f"/api/sessions/{session_id}/result")
        return Seen(
            session_id=session_id,
            logged=[text.split()[1] for text in logged if text.startswith("Event:")],
            messages=page.evaluate("window.messages"),
            result=result,
        )
    finally:
        context.close()


def assert_every_event_once_in_order(seen: Seen) -> None:
    ids = seen.ids()
    assert ids == list(range(1, len(ids) + 1)), "a gap or a repeat"
    assert seen.messages[0]["type"] == "connected"
    assert seen.messages[-1]["type"] == "final"
    # The example's own handler was given the same events, in the same order, and logged each.
    assert seen.logged == [m["type"] for m in seen.messages]
    assert seen.logged.count("step-start") == 5 and seen.logged.count("step-complete") == 5
    assert seen.result["status"] == 200, seen.result
    assert seen.result["body"]["lesson"]


def ports(proxy: RoundRobinProxy, request_line: str) -> list[int]:
    """The instances (by port) that the proxy gave each request starting with `request_line`."""
    return [port for port, line in proxy.routes if line.startswith(request_line + " ")]


def test_the_example_streams_a_whole_session_created_on_one_instance_from_another(browser, servers):
    # Without keep-alive each request of the page takes a connection, and so an instance, of its own.
    with RoundRobinProxy([s.port for s in servers], keep_alive=False) as proxy:
        seen = run_the_example(browser, proxy)
        assert_every_event_once_in_order(seen)
        assert seen.logged.count("connected") == 1
        created = ports(proxy, "POST /api/sessions")
        streamed = ports(proxy, f"GET /api/sessions/{seen.session_id}/run")
        fetched = ports(proxy, f"GET /api/sessions/{seen.session_id}/result")
        assert len(created) == len(streamed) == len(fetched) == 1, proxy.routes
        # More than one instance served the page: the one that created the session did not stream it.
        assert created[0] != streamed[0], f"created and streamed on the same instance: {proxy.routes}"


def test_a_stream_cut_mid_run_resumes_on_another_instance_without_a_gap_or_a_repeat(browser, servers):
    # The stream's first connection is dropped a dozen events in, mid-run; EventSource reconnects by
    # itself, with Last-Event-ID, and the proxy gives the new connection to the next instance.
    with RoundRobinProxy([s.port for s in servers], keep_alive=False, cut_after=CUT_AFTER, cuts=1) as proxy:
        seen = run_the_example(browser, proxy)
        assert proxy.cuts_made == 1
        assert_every_event_once_in_order(seen)
        heads = proxy.stream_requests()
        assert len(heads) == 2, heads  # the cut stream and its resumption
        sent = re.search(r"\r\nLast-Event-ID: (\d+)\r\n", heads[1], re.IGNORECASE)
        assert sent, heads[1]
        resumed_after = int(sent.group(1))
        ids = seen.ids()
        assert 0 < resumed_after < ids[-1]  # cut after some events, and before the last
        # Before the second `connected`: exactly the events up to the one it resumed after.
        second = [n for n, m in enumerate(seen.messages) if m["type"] == "connected"][1]
        before = [int(m["id"]) for m in seen.messages[1:second]]
        assert before == list(range(1, resumed_after + 1))
        streamed = ports(proxy, f"GET /api/sessions/{seen.session_id}/run")
        assert len(streamed) == 2, proxy.routes
        assert streamed[0] != streamed[1], f"resumed on the instance it was cut from: {proxy.routes}"
