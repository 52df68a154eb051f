"""client/stream.py: the SSE parser by the HTML standard's rules, and resuming with a bounded backoff."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from client.stream import SessionStream, SSEMessage, SSEParser, StreamError


def parse(*pieces: str) -> list[SSEMessage]:
    parser = SSEParser()
    return [message for piece in pieces for message in parser.feed(piece)]


def test_data_lines_are_joined_with_newlines_and_one_leading_space_is_dropped():
    assert parse("data: one\ndata:two\ndata:  three\ndata\n\n") == [SSEMessage("one\ntwo\n three\n")]


@pytest.mark.parametrize("newline", ["\n", "\r", "\r\n"])
def test_every_kind_of_line_ending_ends_a_line(newline):
    text = f"id: 7{newline}data: x{newline}{newline}"
    assert parse(text) == [SSEMessage("x", "7")]


def test_a_crlf_split_across_two_pieces_is_one_line_end():
    assert parse("data: x\r", "\n\r", "\ndata: y\n\n") == [SSEMessage("x"), SSEMessage("y")]


def test_an_event_ending_in_a_lone_cr_is_dispatched_without_waiting_for_more():
    parser = SSEParser()
    assert parser.feed("data: x\r\r") == [SSEMessage("x")]
    assert parser.feed("\ndata: y\r\r") == [SSEMessage("y")]  # that LF finished a CRLF: no blank line


def test_comments_blank_events_and_unknown_fields_dispatch_nothing():
    assert parse(": heartbeat\n\nfoo: bar\n\nevent: ping\n\n") == []


def test_an_event_carries_only_its_own_id_while_the_last_id_is_remembered():
    parser = SSEParser()
    messages = parser.feed("id: 4\ndata: a\n\ndata: b\n\n")
    assert [m.id for m in messages] == ["4", None]
    assert parser.last_id == "4"


def test_retry_takes_only_digits_and_an_id_with_nul_is_ignored():
    parser = SSEParser()
    parser.feed("retry: 250\n\nretry: 9x\n\nid: 1\0\n\n")
    assert parser.retry_ms == 250 and parser.last_id is None


def test_a_byte_order_mark_at_the_start_is_skipped_and_event_names_are_kept():
    assert parse("\ufeffevent: note\ndata: x\n\n") == [SSEMessage("x", None, "note")]


def test_a_half_received_event_is_dropped_when_the_connection_ends():
    parser = SSEParser()
    assert parser.feed("id: 1\ndata: whole\n\nid: 2\ndata: half") == [SSEMessage("whole", "1")]
    parser.reset_connection()
    assert parser.feed("\n\n") == []
    assert parser.last_id == "2"  # as the standard has it; the stream below resumes from what it handed on


# -- following a session across dropped connections ---------------------------------------------


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
