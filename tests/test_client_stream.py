"""client/stream.py: following a session's stream, resuming after each drop with a bounded backoff."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from client.stream import SessionStream, StreamError


def frame(event_id: int | None, kind: str, **data: Any) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    payload = json.dumps({"type": kind, "session_id": "s", "data": data}, ensure_ascii=False)
    return f"{head}data: {payload}\n\n"


CONNECTED = frame(None, "connected", last_event_id=0)


class FakeResponse:
    def __init__(self, *pieces: str, status: int = 200, then: Exception | None = None) -> None:
        self.status_code, self.reason = status, "Reason"
        self.chunks = [piece.encode() for piece in pieces]
        self.then = then

    def iter_content(self, chunk_size: int | None = None):
        yield from self.chunks
        if self.then is not None:
            raise self.then

    def json(self) -> Any:
        return json.loads(b"".join(self.chunks))

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeHTTP:
    """Answers each GET with the next scripted response, or raises the next scripted error."""

    def __init__(self, *outcomes: FakeResponse | Exception) -> None:
        self.outcomes = list(outcomes)
        self.headers: list[dict[str, str]] = []

    def get(self, url: str, headers: dict[str, str], **kwargs: Any) -> FakeResponse:
        self.headers.append(headers)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def follow(http: FakeHTTP, max_attempts: int = 5) -> tuple[list[dict], list[float], SessionStream]:
    sleeps: list[float] = []
    stream = SessionStream(http, "http://svc", "s", max_attempts, sleep=sleeps.append)  # type: ignore[arg-type]
    return list(stream.events()), sleeps, stream


def test_a_cut_mid_event_resumes_after_the_last_whole_event_and_yields_each_once():
    cut = requests.exceptions.ChunkedEncodingError("connection broken")
    first = FakeResponse(
        "retry: 100\n\n",
        CONNECTED,
        frame(1, "step-start"),
        frame(2, "step-delta", delta="é"),
        "id: 3\nda",
        then=cut,
    )
    # The server may replay what the client already has: it is dropped, not shown twice.
    second = FakeResponse(
        CONNECTED, frame(2, "step-delta", delta="é"), frame(3, "step-delta"), frame(4, "final")
    )
    http = FakeHTTP(first, second)
    events, sleeps, stream = follow(http)
    assert [(e["type"], e.get("id")) for e in events] == [
        ("connected", None),
        ("step-start", 1),
        ("step-delta", 2),
        ("connected", None),
        ("step-delta", 3),
        ("final", 4),
    ]
    assert "Last-Event-ID" not in http.headers[0]
    assert http.headers[1]["Last-Event-ID"] == "2"
    assert sleeps == [0.1]  # the server's retry hint
    assert stream.reconnects == 1


def test_a_character_split_between_two_chunks_is_decoded_whole():
    body = frame(1, "final", text="Ünïcödé").encode()
    split = body.index("ï".encode()) + 1
    response = FakeResponse()
    response.chunks = [body[:split], body[split:]]
    events, _, _ = follow(FakeHTTP(response))
    assert events[0]["data"]["text"] == "Ünïcödé"


def test_failed_attempts_in_a_row_back_off_from_the_hint_and_then_give_up():
    refused = requests.ConnectionError("refused")
    http = FakeHTTP(
        FakeResponse("retry: 1000\n\n", frame(1, "step-start")), refused, refused, refused, refused
    )
    with pytest.raises(StreamError, match=r"gave up after 3 attempts to reconnect: connection lost"):
        follow(http, max_attempts=3)
    assert len(http.headers) == 4


def test_the_backoff_doubles_and_is_capped():
    http = FakeHTTP(*[FakeResponse("retry: 1000\n\n")] * 7)
    sleeps: list[float] = []
    stream = SessionStream(http, "http://svc", "s", 6, sleep=sleeps.append)  # type: ignore[arg-type]
    with pytest.raises(StreamError, match="the server ended the stream before the session finished"):
        list(stream.events())
    assert sleeps == [1, 2, 4, 8, 16, 30]


def test_progress_resets_the_count_of_failed_attempts():
    refused = requests.ConnectionError("refused")
    http = FakeHTTP(
        FakeResponse("retry: 10\n\n", frame(1, "step-start")),
        refused,
        FakeResponse(frame(2, "step-delta")),
        refused,
        FakeResponse(frame(3, "final")),
    )
    # Each drop and the refusal after it make two attempts in a row; the event between starts a new count.
    events, sleeps, _ = follow(http, max_attempts=2)
    assert [e["id"] for e in events] == [1, 2, 3]
    assert sleeps == [0.01, 0.02, 0.01, 0.02]


def test_without_a_hint_the_first_reconnect_waits_three_seconds():
    http = FakeHTTP(requests.ConnectionError("refused"), FakeResponse(frame(1, "final")))
    _, sleeps, _ = follow(http)
    assert sleeps == [3.0]


def test_a_503_is_tried_again_but_a_404_is_an_error_at_once():
    unavailable = FakeResponse('{"error": "shutting down", "status": 503}', status=503)
    missing = FakeResponse('{"error": "session s not found", "status": 404}', status=404)
    http = FakeHTTP(unavailable, missing)
    with pytest.raises(StreamError, match=r"^GET http://svc/api/sessions/s/run: 404 session s not found$"):
        follow(http)
    assert len(http.headers) == 2


def test_an_event_that_is_not_json_is_an_error():
    with pytest.raises(StreamError, match="not JSON"):
        follow(FakeHTTP(FakeResponse("id: 1\ndata: {oops\n\n")))
