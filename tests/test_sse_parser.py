"""client/sse.py: the event stream interpretation from the HTML standard, fed bytes in any pieces."""

from __future__ import annotations

import pytest

from client.sse import SSEEvent, SSEParser, parse


def events_of(*pieces: bytes) -> list[SSEEvent]:
    return list(parse(pieces))


def test_data_lines_are_joined_with_newlines_and_one_leading_space_is_dropped() -> None:
    stream = b"data: one\ndata:two\ndata:  three\ndata\n\n"
    assert events_of(stream) == [SSEEvent("one\ntwo\n three\n")]


@pytest.mark.parametrize("newline", [b"\n", b"\r", b"\r\n"])
def test_every_kind_of_line_ending_ends_a_line(newline: bytes) -> None:
    stream = b"id: 7" + newline + b"data: x" + newline + newline
    assert events_of(stream) == [SSEEvent("x", "7")]


def test_a_crlf_split_across_two_pieces_is_one_line_end() -> None:
    assert events_of(b"data: x\r", b"\n\r", b"\ndata: y\n\n") == [SSEEvent("x"), SSEEvent("y")]


def test_an_event_ending_in_a_lone_cr_is_dispatched_without_waiting_for_more() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r\r") == [SSEEvent("x")]
    assert parser.feed(b"\ndata: y\r\r") == [SSEEvent("y")]  # that LF finished a CRLF: no blank line


def test_a_byte_order_mark_at_the_start_is_skipped_even_split_between_pieces() -> None:
    assert events_of(b"\xef\xbb", b"\xbfdata: x\n\n") == [SSEEvent("x")]


def test_a_byte_order_mark_after_the_start_is_not_skipped() -> None:
    # It becomes part of a field name no one knows, so that line is ignored.
    assert events_of(b"\xef\xbb\xbfdata: x\n\n\xef\xbb\xbfdata: y\n\ndata: z\n\n") == [
        SSEEvent("x"),
        SSEEvent("z"),
    ]


def test_a_character_split_between_pieces_is_decoded_whole_and_a_bad_byte_is_replaced() -> None:
    stream = "data: Ünïcödé €\n\n".encode()
    assert events_of(*(stream[i : i + 1] for i in range(len(stream)))) == [SSEEvent("Ünïcödé €")]
    assert events_of(b"data: \xff!\n\n") == [SSEEvent("\ufffd!")]


def test_an_event_carries_only_its_own_id_while_the_last_id_is_remembered() -> None:
    parser = SSEParser()
    events = parser.feed(b"id: 4\ndata: a\n\ndata: b\n\n")
    assert [e.id for e in events] == ["4", None]
    assert parser.last_id == "4"


def test_an_id_with_a_nul_is_ignored() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 1\x00\ndata: x\n\n") == [SSEEvent("x")]
    assert parser.last_id is None


@pytest.mark.parametrize("value", ["9x", "", " 5", "-1", "١٢"])
def test_retry_takes_only_ascii_digits(value: str) -> None:
    parser = SSEParser()
    parser.feed(b"retry: 250\n\n" + f"retry: {value}\n\n".encode())
    assert parser.retry == 250


def test_an_event_name_is_kept_and_without_one_the_event_has_none() -> None:
    assert events_of(b"event: note\ndata: x\n\ndata: y\n\n") == [SSEEvent("x", None, "note"), SSEEvent("y")]


def test_an_event_with_no_data_is_not_dispatched_and_forgets_its_name_and_id() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: ping\nid: 3\n\ndata: x\n\n") == [SSEEvent("x")]
    assert parser.last_id == "3"


def test_comments_and_unknown_fields_dispatch_nothing() -> None:
    assert events_of(b": heartbeat\n\nfoo: bar\n\n:\n\n") == []


def test_comments_are_kept_in_order_only_when_asked_for() -> None:
    stream = b": heartbeat\ndata: x\n:  two spaces\n\n:\n"
    keeping, ignoring = SSEParser(keep_comments=True), SSEParser()
    assert keeping.feed(stream) == ignoring.feed(stream) == [SSEEvent("x")]
    assert keeping.comments == ["heartbeat", " two spaces", ""]
    assert ignoring.comments == []


def test_a_half_received_event_is_dropped_at_the_end_of_the_stream() -> None:
    assert events_of(b"id: 1\ndata: whole\n\n", b"id: 2\ndata: half") == [SSEEvent("whole", "1")]


def test_a_new_connection_drops_the_half_received_event_but_keeps_the_last_id_and_retry() -> None:
    parser = SSEParser()
    assert parser.feed(b"retry: 100\nid: 1\ndata: whole\n\nid: 2\ndata: half\r") == [SSEEvent("whole", "1")]
    parser.reset_connection()
    # A new stream, so its byte order mark is skipped; the old event's data is gone.
    assert parser.feed(b"\xef\xbb\xbfdata: next\n\n") == [SSEEvent("next")]
    assert parser.last_id == "2" and parser.retry == 100


STREAM = (
    "\ufeffretry: 1500\r\n: heartbeat\r\nid: 1\revent: note\ndata: Ünïcödé\r\ndata:€ 2\n\r"
    "id: 2\x00\ndata\n\nevent: empty\n\n:\nid: 3\r\ndata: 𝄞 tail\r\n\r\nid: 4\ndata: cut off"
).encode()
EXPECTED = [SSEEvent("Ünïcödé\n€ 2", "1", "note"), SSEEvent(""), SSEEvent("𝄞 tail", "3")]


def state_after(*pieces: bytes) -> tuple[list[SSEEvent], list[str], str | None, int | None]:
    parser = SSEParser(keep_comments=True)
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events, parser.comments, parser.last_id, parser.retry


def test_the_whole_stream_at_once_gives_every_event_by_every_rule() -> None:
    assert state_after(STREAM) == (EXPECTED, ["heartbeat", ""], "4", 1500)


def test_splitting_the_stream_at_any_one_or_two_points_gives_the_same_events() -> None:
    whole = state_after(STREAM)
    for i in range(len(STREAM) + 1):
        assert state_after(STREAM[:i], STREAM[i:]) == whole, i
        for j in range(i, len(STREAM) + 1):
            assert state_after(STREAM[:i], STREAM[i:j], STREAM[j:]) == whole, (i, j)


def test_feeding_the_stream_a_byte_at_a_time_gives_the_same_events() -> None:
    assert state_after(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == state_after(STREAM)
