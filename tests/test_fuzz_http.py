"""Property-based tests of the HTTP surface: generated requests, sent as raw bytes over a real socket to a
real server process, each answered with a well-formed status, JSON errors, and nothing about the inside.

Every violation is collected (the first, shortest request of each kind kept) rather than raised inside the
property, so one run reports every distinct failure at once and nothing is shrunk against a live server.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.sse import parse
from tests.server_process import PROJECT, ServerProcess

WARM_UP_EXAMPLES = 300
EXAMPLES = 1000
POOL = 12  # real sessions the requests aim at: even slots completed, odd ones pending
ANSWER_TIMEOUT = 5.0  # seconds a request may take to be answered
STREAM_TIMEOUT = 3.0  # seconds an event stream is read before it is closed
RSS_GROWTH_LIMIT_KB = 6 * 1024
SECRETS = ("Traceback", str(PROJECT), "orchestrator.db", 'File "')
TERMINAL = ("final", "error")
NO_BODY_STATUSES = (204, 304)
MAX_HEAD = 65536  # Tornado's max_header_size: a longer request head is dropped, not answered

# -- what a request is made of ---------------------------------------------------------------------

SESSION = b"\x00SESSION\x00"  # stands for a real session's id, known only once the server runs
HOST = b"\x00HOST\x00"  # stands for 127.0.0.1:<port>


@dataclass
class Request:
    method: bytes
    target: bytes  # may hold SESSION
    headers: list[tuple[bytes, bytes]]  # may hold HOST; Content-Length comes from content_length
    body: bytes
    route: str  # what the target was built from, for grouping failures
    slot: int = 0  # which real session SESSION is
    content_length: bytes | None = b"auto"  # b"auto": the true length when there is a body
    incomplete: bool = False  # the request promises more than it sends: the client gives up writing


@dataclass
class Answer:
    status: int | None = None
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    event_stream: bool = False
    problem: str = ""  # how reading it went wrong, if it did


def ascii_text(alphabet: str, min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


def percent(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def header_bytes(value: str) -> bytes:
    """A header value as a client would send it: Latin-1 where it fits (as ² does), UTF-8 otherwise."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return utf8(value)


SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
# Digits that are not 0-9 (str.isdigit() says yes to most of them, int() to some): superscripts, circled,
# fullwidth, Arabic-Indic, Extended Arabic-Indic, NKo, Bengali, Thai, mathematical bold, Roman, fraction.
ODD_DIGITS = [
    "\u00b2",
    "\u00b3",
    "\u00b9",
    "\u2460",
    "\uff11\uff12",
    "\u0663",
    "\u06f4",
    "\u07c5",
    "\u09ea",
    "\u0e55",
    "\U0001d7d7",
    "\u216b",
    "\u00bd",
    "\u2070",
    "1\u00b2",
]

odd_bytes = st.sampled_from(
    [b"\x00", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80", b"\xfe\xff"]
)
segment = st.one_of(
    ascii_text(SAFE, 1, 24),
    st.sampled_from(["..", ".", "%2e%2e", "%2F", "%00", "%ff", "%C3%28", "%ED%A0%80", "~", "%", "%zz", "%2"]),
    odd_bytes.map(percent),
    st.binary(min_size=1, max_size=12).map(percent),
    st.text(min_size=1, max_size=8).map(lambda t: percent(utf8(t))),
    st.text(min_size=1, max_size=6).filter(lambda t: not set(t) & set("/?# \r\n")),
)


@st.composite
def session_ref(draw: st.DrawFn) -> tuple[bytes, int]:
    """A session id for a path: mostly a real one (a slot of the pool), otherwise anything."""
    slot = draw(st.integers(0, POOL - 1))
    if chance(draw, 2, 3):
        return SESSION, slot
    other = draw(
        st.one_of(
            st.uuids().map(str),
            segment,
            st.sampled_from(["%00", "a" * 300, "0" * 40, "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "sessions"]),
        )
    )
    return utf8(other), slot


image_name = st.one_of(
    st.sampled_from(
        ["outline-map.svg", "key-terms.svg", "illustration.png", "..%2F..%2Fserver.py", "%00.svg", ".svg"]
    ),
    segment,
)


def query_of(keys: list[str]) -> st.SearchStrategy[bytes]:
    value = st.one_of(
        st.integers(-(10**6), 10**6).map(str),
        st.sampled_from(
            ["", "0", "-1", "1e3", "100", "101", "20", "%205", "%2B5", "0x10", "9" * 30, "9" * 5000]
        ),
        st.sampled_from(ODD_DIGITS).map(lambda d: percent(utf8(d))),
        st.sampled_from(["pending", "running", "completed", "failed", "cancelled", "interrupted", "nope"]),
        odd_bytes.map(percent),
        st.uuids().map(str),
        ascii_text(SAFE + "%+=;", 0, 12),
    )
    pairs = st.lists(
        st.tuples(st.sampled_from([*keys, "x", "", "%00", "%ff"]), value), min_size=1, max_size=4
    )
    # Each key with each of the worst values, so that none of them is left to luck.
    worst = ["%00", "%ff", "%ED%A0%80", "%C2%B2", "%E2%91%A0", "%EF%BC%91", "%D9%A3", "9" * 5000, "-0"]
    pointed = st.tuples(st.sampled_from(keys), st.sampled_from(worst)) if keys else st.nothing()
    return st.one_of(
        st.just(b""),
        st.just(b"?"),
        pairs.map(lambda kv: ("?" + "&".join(f"{k}={v}" for k, v in kv)).encode()),
        pointed.map(lambda kv: f"?{kv[0]}={kv[1]}".encode()),
    )


@st.composite
def last_event_id(draw: st.DrawFn) -> str:
    """A Last-Event-ID: a fair one, digits that are not 0-9, a huge number, or junk."""
    kind = draw(st.sampled_from(["odd", "number", "huge", "odd", "junk", "huge", "number", "text"]))
    if kind == "number":
        return str(draw(st.integers(0, 10**6)))
    if kind == "odd":
        return draw(st.sampled_from(ODD_DIGITS))
    if kind == "huge":
        return draw(st.sampled_from(["9" * 19, "9" * 20, "9" * 4300, "9" * 4301, "1" + "0" * 6000]))
    if kind == "junk":
        return draw(st.sampled_from(["", " ", "-1", "+1", "1.5", "0x10", "1e3", " 7 ", "1_000"]))
    return draw(st.text(max_size=8))


content_type = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "text/event-stream",
        "*/*",
        ";;;",
        "application/json;" * 50,
        "\xff/\xfe",
    ]
)
origins = ["http://evil.example", "null", "http://127.0.0.1", "https://localhost:1", "\xe9", ""]
extra_header = st.one_of(
    st.tuples(st.just("Content-Type"), content_type),
    st.tuples(st.just("Last-Event-ID"), last_event_id()),
    st.tuples(st.just("Origin"), st.sampled_from(origins)),
    st.tuples(st.just("Accept"), st.sampled_from(["text/event-stream", "*/*", "application/json", "\xff"])),
    st.tuples(st.just("X-Request-ID"), st.text(max_size=40)),
    st.tuples(
        st.just("Authorization"),
        st.sampled_from(["Bearer x", "Bearer ", "Basic Zm9vOmJhcg==", "bearer \xff", "Bearer " + "k" * 5000]),
    ),
    st.tuples(st.just("Cache-Control"), st.sampled_from(["no-cache", "max-age=-1"])),
    st.tuples(st.just("If-Modified-Since"), st.sampled_from(["Thu, 01 Jan 1970 00:00:00 GMT", "yesterday"])),
    st.tuples(st.just("If-None-Match"), st.sampled_from(['"x"', "*", "\xff"])),
    st.tuples(st.just("Range"), st.sampled_from(["bytes=0-1", "bytes=5-1", "bytes=-0", "bytes=99999999-"])),
    st.tuples(ascii_text("abcdefghijklmnopqrstuvwxyz-", 1, 16), st.text(max_size=20)),
)
hosts = ["localhost", "127.0.0.1", "[::1]", "evil.example", "", "127.0.0.1:99999", "\xff", "a" * 300, "a b"]
host_header = st.one_of(
    st.just(HOST.decode("latin-1")),
    st.just(HOST.decode("latin-1")),
    st.just(HOST.decode("latin-1")),
    st.sampled_from(hosts),
    st.none(),  # no Host at all
)

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=8,
)


def nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


nasty_body = st.sampled_from(
    [
        b'{"topic": "ab\\ud800cd"}',
        b'{"topic": "\\udfff"}',
        b'{"topic": "\\ud800\\ud800"}',
        b'{"\\ud800": "x", "topic": "photosynthesis"}',
        b'{"topic": "photosynthesis", "extra": "\\udbff"}',
        b'{"topic": 1e999}',
        b'{"topic": NaN}',
        b'{"topic": "' + b"9" * 5000 + b'"}',
        b'{"topic": ' + b"9" * 5000 + b"}",
        b'{"topic": "photosynthesis", "topic": 5}',
        b'\xef\xbb\xbf{"topic": "photosynthesis"}',
        b'{"topic": "\xff\xfe"}',
        b'{"topic": "\xed\xa0\x80"}',
        b'{"topic": "abc',
        b"   ",
        b"null",
        b'"topic"',
        b"\x00",
        b'{"topic": "\x00"}',
        b'{"topic": "\\u0000"}',
        b'{"topic": "a\\nb\\r\\n"}',
        b'{"topic": "' + b"x" * 501 + b'"}',
        b"x" * 70_000,  # over the body limit
    ]
)


@st.composite
def body(draw: st.DrawFn) -> bytes:
    """A request body: a good topic, JSON of every shape, the nasty cases, deep nesting, raw bytes."""
    kind = draw(
        st.sampled_from(
            [
                "topic",
                "nasty",
                "json",
                "topic-utf8",
                "nasty",
                "topic-value",
                "bytes",
                "nested",
                "nasty",
                "empty",
            ]
        )
    )
    if kind == "topic":
        return json.dumps({"topic": draw(st.text(max_size=60))}).encode()
    if kind == "topic-utf8":
        return utf8(json.dumps({"topic": draw(st.text(max_size=60))}, ensure_ascii=False))
    if kind == "topic-value":
        return json.dumps({"topic": draw(json_value)}).encode()
    if kind == "json":
        return json.dumps(draw(json_value)).encode()
    if kind == "nasty":
        return draw(nasty_body)
    if kind == "nested":
        return nested(
            draw(st.sampled_from([100, 1_000, 10_000, 30_000])), draw(st.sampled_from(["list", "obj"]))
        )
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=64))
    return b""


def chance(draw: st.DrawFn, times: int, out_of: int) -> bool:
    """True about `times` in `out_of` draws (hypothesis leans to the first choice, so the likelier one goes
    first; st.integers would lean on its bounds)."""
    likely, unlikely = (True, False) if 2 * times >= out_of else (False, True)
    choices = [likely] * max(times, out_of - times) + [unlikely] * min(times, out_of - times)
    return draw(st.sampled_from(choices))


@st.composite
def content_length(draw: st.DrawFn) -> bytes | None:
    """Mostly the true length (b"auto"); otherwise none at all, or a lie."""
    kind = draw(st.sampled_from(["auto"] * 10 + ["none", "odd", "number"]))
    if kind == "auto":
        return b"auto"
    if kind == "none":
        return None  # left out, body or not
    if kind == "odd":
        return draw(
            st.sampled_from([b"-1", b"abc", b"99999999999999999999", b"+5", b" 5", b"0x10", b"1.5", b""])
        )
    return str(draw(st.integers(0, 80_000))).encode()


METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"]
ODD_METHODS = [b"get", b"FOO", b"PROPFIND", b"TRACE", b"M-SEARCH", b"G\xc9T", b"X" * 60, b"BREW"]


def method(*usual: bytes) -> st.SearchStrategy[bytes]:
    """Mostly the methods a route is meant for, otherwise any, odd tokens included."""
    return st.one_of(*[st.just(m) for m in usual * 3], st.sampled_from(METHODS), st.sampled_from(ODD_METHODS))


def promised(length: bytes) -> int:
    """How many body bytes a Content-Length value may make a lenient server wait for."""
    try:
        return int(length.strip())
    except ValueError:
        return 0


@st.composite
def request(draw: st.DrawFn) -> Request:
    """One request, aimed at one part of the service: creating, streaming, listing, a session's other
    routes, the page, or anywhere at all; then made hostile in its framing and headers."""
    sid, slot = draw(session_ref())
    session_path = b"/api/sessions/" + sid
    headers: list[tuple[str, str]] = []
    payload = b""
    scenario = draw(
        st.sampled_from(
            ["create"] * 3 + ["stream"] * 3 + ["list"] * 2 + ["session"] * 3 + ["page"] + ["anything"] * 2
        )
    )
    if scenario == "create":
        verb = draw(method(b"POST"))
        target = b"/api/sessions" + draw(st.sampled_from([b"", b"", b"/"])) + draw(query_of(["topic"]))
        if chance(draw, 9, 10):
            payload = draw(body())
        if draw(st.booleans()):
            headers.append(("Content-Type", draw(content_type)))
        route = "create"
    elif scenario == "stream":
        verb = draw(method(b"GET", b"GET", b"POST"))
        target = session_path + b"/run" + draw(query_of(["last_event_id", "token"]))
        if chance(draw, 2, 3):
            headers.append(("Last-Event-ID", draw(last_event_id())))
        if draw(st.booleans()):
            headers.append(("Accept", "text/event-stream"))
        route = "stream"
    elif scenario == "list":
        verb = draw(method(b"GET"))
        target = b"/api/sessions" + draw(query_of(["limit", "status", "before"]))
        route = "list"
    elif scenario == "session":
        route = draw(st.sampled_from(["session", "result", "cancel", "lesson.html", "lesson.md", "images"]))
        tail = {"session": b"", "images": b"/images/"}.get(route, b"/" + route.encode())
        if route == "images":
            tail += utf8(draw(image_name))
        usual = {"session": (b"GET", b"DELETE"), "cancel": (b"POST",)}.get(route, (b"GET",))
        verb = draw(method(*usual))
        target = session_path + tail + draw(query_of([]))
    elif scenario == "page":
        verb = draw(method(b"GET", b"HEAD"))
        target = draw(
            st.one_of(
                st.sampled_from([b"/", b"/index.html", b"/web/app.js", b"/web/style.css", b"/web/", b"/web"]),
                segment.map(lambda s: b"/web/" + utf8(s)),
            )
        ) + draw(query_of([]))
        route = "page"
    else:
        verb = draw(method(*METHODS))
        kind = draw(st.sampled_from(["random", "random", "long", "health"]))
        if kind == "random":
            target = utf8("/" + "/".join(draw(st.lists(segment, min_size=1, max_size=6))))
        elif kind == "long":
            size = draw(st.sampled_from([1_000, 8_000, 20_000, 70_000]))
            target = b"/api/sessions/" + b"a" * size + draw(st.sampled_from([b"", b"/run", b"/images/x.svg"]))
        else:
            target = b"/health"
        target += draw(query_of(["limit", "last_event_id"]))
        if draw(st.booleans()):
            payload = draw(body())
        route = kind
    host = draw(host_header)
    if host is not None:
        headers.insert(0, ("Host", host))
    headers += draw(st.lists(extra_header, max_size=3))
    length = draw(content_length())
    incomplete = length not in (b"auto", None) and promised(length) > len(payload)
    if chance(draw, 1, 20):  # a chunked body, well formed or not
        headers.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", "gzip, chunked", "x"]))))
        whole = b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload)
        broken = [b"zz\r\n" + payload, b"%x\r\n%b" % (len(payload) + 5, payload)]
        payload = draw(st.sampled_from([whole, *broken]))
        length, incomplete = None, payload in broken
    encoded = [(name.encode(), header_bytes(value)) for name, value in headers]
    return Request(verb, target, encoded, payload, route, slot, length, incomplete)


# -- a small HTTP/1.1 client -----------------------------------------------------------------------


def raw_bytes(req: Request, port: int, session_id: str) -> bytes:
    host = f"127.0.0.1:{port}".encode()
    target = req.target.replace(SESSION, session_id.encode())
    lines = [req.method + b" " + target + b" HTTP/1.1"]
    for name, value in req.headers:
        lines.append(name + b": " + value.replace(HOST, host))
    if req.content_length == b"auto":
        if req.body or req.method in (b"POST", b"PUT", b"PATCH"):
            lines.append(b"Content-Length: %d" % len(req.body))
    elif req.content_length is not None:
        lines.append(b"Content-Length: " + req.content_length)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + req.body


class Reader:
    """Reads one response from a socket against a deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline, self.buffer, self.closed = sock, deadline, b"", False

    def fill(self) -> bool:
        """Reads more; False once the peer closed or the deadline passed."""
        left = self.deadline - time.monotonic()
        if left <= 0 or self.closed:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True

    def until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            if not self.fill():
                return None
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not self.fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def read_answer(reader: Reader, head_request: bool) -> Answer:
    answer = Answer()
    head = reader.until(b"\r\n\r\n")
    if head is None:
        answer.problem = "closed without an answer" if reader.closed else "no answer in time"
        answer.body = reader.buffer
        return answer
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    match = re.fullmatch(r"HTTP/1\.[01] (\d{3}) ?(.*)", status_line)
    if not match:
        answer.problem = f"not an HTTP status line: {status_line[:80]!r}"
        return answer
    answer.status, answer.reason = int(match.group(1)), match.group(2)
    for line in header_lines:
        name, _, value = line.partition(":")
        answer.headers[name.strip().lower()] = value.strip()
    answer.event_stream = answer.headers.get("content-type", "").startswith("text/event-stream")
    if head_request or answer.status in NO_BODY_STATUSES or answer.status < 200:
        return answer
    if answer.event_stream:  # read to the terminal event, or for a short while
        reader.deadline = min(reader.deadline, time.monotonic() + STREAM_TIMEOUT)
    if answer.headers.get("transfer-encoding", "").lower() == "chunked":
        answer.body = read_chunked(reader, answer)
    elif "content-length" in answer.headers:
        size = int(answer.headers["content-length"])
        data = reader.exactly(size)
        answer.body = data if data is not None else reader.buffer
        if data is None:
            answer.problem = f"body shorter than its Content-Length {size}"
    else:
        while reader.fill():
            pass
        answer.body = reader.buffer
    return answer


def read_chunked(reader: Reader, answer: Answer) -> bytes:
    body = b""
    while True:
        size_line = reader.until(b"\r\n")
        if size_line is None:
            if not answer.event_stream:
                answer.problem = "chunked body cut short"
            return body
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        chunk = reader.exactly(size + 2)
        if chunk is None:
            answer.problem = "chunked body cut short"
            return body
        body += chunk[:-2]
        if answer.event_stream and ended(body):
            return body


def ended(stream: bytes) -> bool:
    """Whether an event stream has delivered its terminal event."""
    return any(
        f'"type":"{kind}"'.encode() in stream or f'"type": "{kind}"'.encode() in stream for kind in TERMINAL
    )


def exchange(port: int, raw: bytes, incomplete: bool, head_request: bool) -> Answer:
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
        try:
            sock.sendall(raw)
            if incomplete:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer (413, 400) and close before the whole request is sent
        return read_answer(Reader(sock, time.monotonic() + ANSWER_TIMEOUT), head_request)


# -- what every answer must be ----------------------------------------------------------------------


def may_drop(req: Request, raw: bytes) -> bool:
    """A request the client did not finish, or whose head is over Tornado's 64 KiB limit, may be dropped
    without an answer; any other deserves one."""
    return req.incomplete or raw.find(b"\r\n\r\n") > MAX_HEAD


def problems(req: Request, raw: bytes, answer: Answer) -> list[str]:
    found = []
    if answer.status is None:
        if not may_drop(req, raw):
            found.append(answer.problem)
        return found
    if answer.status >= 500:
        found.append(f"{answer.status} answer")
    if answer.problem and not may_drop(req, raw):
        found.append(answer.problem)
    if 400 <= answer.status < 500 and answer.body:
        try:
            error = json.loads(answer.body)
        except ValueError:
            kind = answer.headers.get("content-type", "no Content-Type")
            found.append(f"{answer.status} with a body that is not JSON ({kind})")
        else:
            if not (isinstance(error, dict) and isinstance(error.get("error"), str)):
                found.append(f"{answer.status} JSON without an error message")
            elif error.get("status") != answer.status:
                found.append(f"{answer.status} JSON saying status {error.get('status')!r}")
            if not answer.headers.get("content-type", "").startswith("application/json"):
                found.append(f"{answer.status} JSON with Content-Type {answer.headers.get('content-type')!r}")
    for secret in SECRETS:
        if secret.encode() in answer.body:
            found.append(f"body shows {secret!r}")
    return found


KEEP = 600  # bytes of a request kept for the report


def shown(raw: bytes) -> str:
    return repr(raw if len(raw) <= KEEP else raw[:KEEP] + b"...(%d bytes)" % len(raw))


@dataclass
class Failure:
    route: str
    method: str
    problem: str
    number: str  # which request of which phase it was
    request: bytes  # at most KEEP bytes of it
    size: int
    previous: bytes  # the request before it, for failures that an earlier request set up
    answer: Answer


class Findings:
    """Every failing answer, grouped for the report by route, method, problem and the exception the
    server logged for it; each group shows its shortest request and the first one, with the request
    before that (a 500 on a plain GET may come from what an earlier request stored)."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.failures: list[Failure] = []
        self.requests = 0
        self.previous = b""

    def add(self, req: Request, raw: bytes, answer: Answer, found: list[str]) -> None:
        self.requests += 1
        method = req.method.decode("latin-1") if req.method.isupper() and req.method.isalpha() else "odd"
        for problem in found:
            problem = re.sub(r"\d{4,}", "N", problem)
            self.failures.append(
                Failure(
                    req.route,
                    method,
                    problem,
                    f"{self.requests} of the {self.phase}",
                    raw[:KEEP],
                    len(raw),
                    self.previous,
                    answer,
                )
            )
        self.previous = raw[:KEEP]

    def report(self, log: str) -> str:
        exceptions = logged_exceptions(log)
        groups: dict[tuple[str, str, str, str], list[Failure]] = {}
        for failure in self.failures:
            request_id = failure.answer.headers.get("x-request-id", "")
            cause = exceptions.get(request_id, "") if failure.answer.status == 500 else ""
            cause = re.sub(r"(?<=position )\d+|(?<=has )\d+|\d{4,}", "N", cause)  # one group, any size
            groups.setdefault((failure.route, failure.method, failure.problem, cause), []).append(failure)
        lines = [f"{len(groups)} kinds of failure in {self.requests} requests:"]
        for (route, method, problem, cause), failures in sorted(groups.items()):
            shortest = min(failures, key=lambda f: f.size)
            first = failures[0]
            answer = shortest.answer
            got = f"{answer.status} {answer.reason}" if answer.status else answer.problem
            lines.append(f"- [{route} {method}] {problem} (x{len(failures)})")
            if cause:
                lines.append(f"    server logged: {cause}")
            lines.append(f"    request: {shown(shortest.request)}")
            lines.append(
                f"    answer: {got}; Content-Type {answer.headers.get('content-type')!r}; "
                f"body {answer.body[:200]!r}"
            )
            if first is not shortest:
                lines.append(f"    first seen (request {first.number}): {shown(first.request)}")
            lines.append(f"    after: {shown(first.previous)}")
        return "\n".join(lines)

    def __bool__(self) -> bool:
        return bool(self.failures)

    def extend(self, other: Findings) -> None:
        self.failures = other.failures + self.failures
        self.requests += other.requests


UNCAUGHT = re.compile(r"\[req=(\S+)[^\]]*\] Uncaught exception")
LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d")


def logged_exceptions(log: str) -> dict[str, str]:
    """Request id -> the last line of the traceback the server logged for it (its text log format)."""
    found: dict[str, str] = {}
    current, last = "", ""
    for line in [*log.splitlines(), "0000-00-00 0"]:
        if LOG_LINE.match(line):
            if current and last:
                found[current] = last[:300]
            match = UNCAUGHT.search(line)
            current, last = (match.group(1) if match else ""), ""
        elif current and line.strip():
            last = line.strip()
    return found


# -- the server and the sessions the requests aim at -------------------------------------------------


class Pool:
    """Real sessions: even slots run to completion, odd slots left pending. One deleted or cancelled by a
    generated request is replaced, so the requests keep finding every kind of session."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.http = requests.Session()
        self.ids = [self.fresh(slot) for slot in range(POOL)]

    def fresh(self, slot: int) -> str:
        response = self.http.post(
            f"{self.server.url}/api/sessions", json={"topic": f"topic {slot}"}, timeout=10
        )
        if response.status_code != 201:
            return f"unavailable-{slot}"  # e.g. too many pending: requests aimed here meet a 404
        session_id = response.json()["id"]
        if slot % 2 == 0:
            with self.http.get(
                f"{self.server.url}/api/sessions/{session_id}/run", stream=True, timeout=30
            ) as run:
                for event in parse(run.iter_content(chunk_size=None)):
                    if json.loads(event.data)["type"] in TERMINAL:
                        break
        return session_id

    def refresh(self, slot: int) -> None:
        response = self.http.get(f"{self.server.url}/api/sessions/{self.ids[slot]}", timeout=10)
        if response.status_code == 404 or (response.ok and response.json()["status"] == "cancelled"):
            self.ids[slot] = self.fresh(slot)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess("--rate_limit=", "--create_rate_limit=", "--request_timeout=5")
    yield process
    process.kill()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fuzz(server: ServerProcess, pool: Pool, findings: Findings, examples: int) -> None:
    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(req=request())
    def one(req: Request) -> None:
        session_id = pool.ids[req.slot]
        raw = raw_bytes(req, server.port, session_id)
        answer = exchange(server.port, raw, req.incomplete, head_request=req.method == b"HEAD")
        findings.add(req, raw, answer, problems(req, raw, answer))
        if SESSION in req.target and req.method in (b"DELETE", b"POST"):
            pool.refresh(req.slot)

    one()


def test_generated_requests_get_well_formed_answers_and_the_server_stays_healthy(server):
    pool = Pool(server)
    warm_up = Findings("warm-up")
    fuzz(server, pool, warm_up, WARM_UP_EXAMPLES)
    before = rss_kb(server.proc.pid)

    findings = Findings("run")
    fuzz(server, pool, findings, EXAMPLES)
    assert findings.requests >= EXAMPLES

    failures = []
    started = time.monotonic()
    try:
        health = requests.get(f"{server.url}/health", timeout=1)
        if health.status_code != 200 or time.monotonic() - started > 1:
            failures.append(f"/health answered {health.status_code} in {time.monotonic() - started:.2f} s")
    except requests.RequestException as exc:
        failures.append(f"/health did not answer within 1 s: {exc}")
    grown = rss_kb(server.proc.pid) - before
    if grown > RSS_GROWTH_LIMIT_KB:
        failures.append(f"the server's RSS grew by {grown} KiB over {findings.requests} requests")
    findings.extend(warm_up)  # what the warm-up found counts too
    if findings:
        failures.append(findings.report(server.log_text()))
    print(f"{findings.requests} requests; RSS grew by {grown} KiB after the warm-up")
    assert not failures, "\n".join(failures)
