"""Reads the Server-Sent Events wire format by the HTML standard's event stream rules.

Fed bytes in whatever pieces they arrive (a piece may end inside a UTF-8 character or between the
CR and LF of a CRLF), the parser returns the events each piece completes. A UTF-8 byte order mark
at the start is skipped; lines end in CR, LF or CRLF; `data:` lines are joined with newlines; one
space after the colon is dropped; `id:` (unless it holds a NUL) becomes the last event id; `retry:`
takes ASCII digits only; `:` lines are comments; a blank line dispatches an event that has data,
and an event cut off by the end of the stream is never dispatched.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

_LINE_END = re.compile(r"\r\n|\r|\n")


def _utf8_decoder() -> codecs.IncrementalDecoder:
    # The standard decodes the stream as UTF-8 with replacement: a bad byte never stops it.
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its data, the id field it carried itself (if any), its `event:` name."""

    data: str
    id: str | None = None
    event: str | None = None  # None when it had no `event:` field, so EventSource calls it "message"


@dataclass
class SSEParser:
    """Fed one stream's bytes as they arrive, returns the events each piece completes.

    `last_id` and `retry` (the reconnection time in ms) outlive `reset_connection`, as the standard
    keeps them across reconnects; with `keep_comments` the text of every `:` line is kept in order.
    """

    keep_comments: bool = False
    comments: list[str] = field(default_factory=list)
    last_id: str | None = None
    retry: int | None = None
    _decoder: codecs.IncrementalDecoder = field(default_factory=_utf8_decoder, repr=False)
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _event: str | None = None
    _own_id: str | None = None
    _started: bool = False
    _after_cr: bool = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not text:
            return []  # only part of a character: nothing to look at until the rest arrives
        if not self._started:
            text, self._started = text.removeprefix("\ufeff"), True
        if self._after_cr:
            # The last piece ended in CR: a LF opening this one is the rest of that CRLF.
            text, self._after_cr = text.removeprefix("\n"), False
        buffer, start, events = self._buffer + text, 0, []
        for end in _LINE_END.finditer(buffer):
            event = self._line(buffer[start : end.start()])
            if event is not None:
                events.append(event)
            start = end.end()
        # A CR is a whole line end at once, so its event is not held back waiting to see a LF.
        self._after_cr = buffer.endswith("\r")
        self._buffer = buffer[start:]
        return events

    def reset_connection(self) -> None:
        """Start a new stream: drop a half-received event and any partial line, keep last id and retry."""
        self._decoder = _utf8_decoder()
        self._buffer, self._data, self._event, self._own_id = "", [], None, None
        self._started = self._after_cr = False

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if not name:
            if self.keep_comments:
                self.comments.append(value)
        elif name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = self._own_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event, own_id = self._data, self._event, self._own_id
        self._data, self._event, self._own_id = [], None, None
        if not data:
            return None
        return SSEEvent("\n".join(data), own_id, event or None)


def parse(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """The events of one whole stream, read from its pieces as they come."""
    parser = SSEParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
