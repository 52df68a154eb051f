"""client/poll.py: following a session by long polling, each event once, with a bounded backoff."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from client.api import AuthError, ClientError
from client.poll import SessionPoller
from client.stream import StreamError


def event(event_id: int, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": kind, "session_id": "s", "data": data, "timestamp": "t"}


def answer(*events: dict[str, Any], done: bool = False, status: str = "running") -> FakeResponse:
    next_after = events[-1]["id"] if events else 0
    body = {"events": list(events), "done": done, "status": status, "next_after": next_after}
    return FakeResponse(200, body)


class FakeResponse:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status_code, self.reason = status, "Reason"
        self.body, self.headers = body, headers or {}

    def json(self) -> Any:
        if isinstance(self.body, str):
            return json.loads(self.body)
        return self.body


class FakeHTTP:
    """Answers POST /start with `start`, and each GET with the next scripted answer (or raises it)."""

    def __init__(self, *outcomes: FakeResponse | Exception, start: int = 202) -> None:
        self.outcomes = list(outcomes)
        self.start = start
        self.headers: dict[str, str] = {}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def post(self, url: str, **kwargs: Any) -> FakeResponse:
        self.requests.append(("POST", url, {}))
        return FakeResponse(self.start, {"error": "already started"} if self.start == 409 else {})

    def get(self, url: str, params: dict[str, Any], **kwargs: Any) -> FakeResponse:
        self.requests.append(("GET", url, params))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def follow(http: FakeHTTP, max_attempts: int = 5) -> tuple[list[dict], list[float], SessionPoller]:
    sleeps: list[float] = []
    poller = SessionPoller(http, "http://svc", "s", max_attempts, sleep=sleeps.append)  # type: ignore[arg-type]
    return list(poller.events()), sleeps, poller


def test_it_starts_the_session_then_polls_after_the_last_event_it_has_until_the_final_one():
    http = FakeHTTP(
        answer(),  # a held poll that ran out of time: nothing new
        answer(event(1, "step-start"), event(2, "step-delta", delta="é")),
        answer(event(3, "step-complete"), event(4, "final"), done=True, status="completed"),
    )
    events, sleeps, poller = follow(http)
    assert [e["id"] for e in events] == [1, 2, 3, 4]
    assert events[1]["data"]["delta"] == "é"
    assert sleeps == [] and poller.last_id == 4
    assert http.requests[0][:2] == ("POST", "http://svc/api/sessions/s/start")
    polls = [params for method, url, params in http.requests if method == "GET"]
    assert [p["after"] for p in polls] == [0, 0, 2]
    assert all(float(p["wait"]) > 0 for p in polls)


def test_a_session_started_already_is_followed_all_the_same():
    events, _, _ = follow(FakeHTTP(answer(event(1, "error"), done=True, status="failed"), start=409))
    assert [e["type"] for e in events] == ["error"]


def test_an_event_answered_twice_is_handed_on_once():
    http = FakeHTTP(
        answer(event(1, "step-start"), event(2, "step-delta")),
        answer(event(2, "step-delta"), event(3, "final"), done=True),
    )
    events, _, _ = follow(http)
    assert [e["id"] for e in events] == [1, 2, 3]


def test_dropped_connections_and_503s_are_tried_again_with_a_growing_wait():
    lost = requests.ConnectionError("connection refused")
    busy = FakeResponse(429, {"error": "slow down"}, {"Retry-After": "7"})
    http = FakeHTTP(
        lost,
        FakeResponse(503, {"error": "draining"}),
        answer(event(1, "step-start")),
        busy,
        answer(event(2, "final"), done=True),
    )
    notices: list[tuple[int, float, str]] = []
    sleeps: list[float] = []
    poller = SessionPoller(
        http,
        "http://svc",
        "s",
        sleep=sleeps.append,
        on_reconnect=lambda attempt, delay, why: notices.append((attempt, delay, why)),
    )
    events = list(poller.events())
    assert [e["id"] for e in events] == [1, 2]
    # 1 s, then doubled; the count starts again after an answer; a 429's Retry-After is waited out.
    assert sleeps == [1.0, 2.0, 7.0]
    assert [attempt for attempt, _, _ in notices] == [1, 2, 1]
    assert "503 draining" in notices[1][2] and "429 slow down" in notices[2][2]
    assert poller.reconnects == 3


def test_it_gives_up_after_max_attempts_failures_in_a_row():
    lost = requests.ConnectionError("connection refused")
    with pytest.raises(StreamError, match="gave up after 2 attempts"):
        follow(FakeHTTP(lost, lost, lost), max_attempts=2)


def test_done_without_a_terminal_event_is_an_error_not_an_endless_poll():
    with pytest.raises(StreamError, match="sent no final or error event"):
        follow(FakeHTTP(answer(event(1, "step-start")), answer(done=True, status="cancelled")))


def test_a_404_says_the_service_may_have_no_long_polling_and_names_the_way_out():
    with pytest.raises(StreamError, match=r"no long-polling endpoint \(--transport=sse"):
        follow(FakeHTTP(FakeResponse(404, {"error": "no such endpoint"})))


def test_an_answer_that_is_not_a_list_of_events_is_an_error():
    with pytest.raises(StreamError, match="not the JSON of a list of events"):
        follow(FakeHTTP(FakeResponse(200, {"events": "none"})))


def test_a_401_is_an_auth_error_and_another_status_a_client_error():
    with pytest.raises(AuthError, match="needs an API key"):
        follow(FakeHTTP(FakeResponse(401, {"error": "missing or invalid API key"})))
    with pytest.raises(ClientError, match="400 bad after"):
        follow(FakeHTTP(FakeResponse(400, {"error": "bad after"})))
