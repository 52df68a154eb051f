"""`python -m bench compare`: this service against a yardstick, figure by figure, with its targets.

The yardstick is bench/reference.py: the same contract on the stack a user would otherwise pick
(Starlette + sse-starlette on plain uvicorn), in memory, with the same events per step. Each
figure is measured on the reference, then on this service with the SQLite store and with the
memory store: each a child process on a free loopback port, one after the other. The table gives
both numbers, the ratio (this service ÷ reference) and the target.

Server CPU is user+sys of the server's process from /proc/PID/stat, read before and after each
workload: the load generator shares the cores, so wall-clock rates alone would mix its cost in.
The load generator is this process: raw asyncio sockets, requests written by hand, responses read
by Content-Length, or de-chunked and fed to client/sse.py's SSEParser, so it stays cheap enough for
thousands of streams. Every workload has a deadline and ends by itself; one that fails or runs out
of time leaves its figures blank and says why.

Workloads, per server (pace 0 unless said):
- a census: the events of one run per type and step, to check the reference streams as many;
- end to end: create, run to `final` (POST /run), GET /result, N sessions, 16 at a time;
- first byte: 50 runs started at once (POST /run on connections already open), a few rounds;
- fan-out: 500 streams of one session asked at once (the first GET starts the run, so the late
  ones replay what they missed, then follow it live), then 500 of a finished session (replay);
- creates: POST /api/sessions on 16 keep-alive connections for a few seconds;
- latency (a server at the shipped pace, 600 characters/s): 1,000 streams of one running session,
  the first of which started it and the others asked as reconnections that have seen everything
  (Last-Event-ID past the end), so they get no replay; each event produced after all of them were
  answered is timed from its `timestamp` (milliseconds) to its parse on each stream, and from its
  first receipt on any stream;
- idle streams (a server at pace 1 character/s, so a run writes once a minute or so): RSS growth
  (VmRSS) while N more streams attach to a few running sessions, divided by N.

Then the floor: bench/floor.py, Tornado alone answering the create, under the creates workload. What
it costs per request bounds what any work trimmed from this service can reach.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import re
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import cast

import ujson

from bench.e2e import percentile, proc_value, rss_kib
from bench.server import BenchServer, ChildServer
from client.sse import SSEEvent, SSEParser

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CONNECT_PARALLEL = 64  # connections being opened at once: below the listen backlog of either server
FD_RESERVE = 512  # descriptors the harness and the server need besides the idle streams
FINAL = '{"type":"final"'
CENSUS_TOPIC = "machine learning"
SHIPPED_PACE = 600.0  # characters per second, as conf/orchestrator.toml streams lessons to people
IDLE_PACE = 1.0  # one character a second: a run writes a piece about once a minute
SETTLE = 1.0  # seconds for the server to finish with what it was sent before its memory is read
POLL = 0.05  # seconds between checks of a condition on many streams
LIVE_ONLY = 10**12  # a Last-Event-ID past any session's last event: a stream of the events to come

EventHandler = Callable[["EventStream", SSEEvent, float], None]


# --- what the server process used ---------------------------------------------------------------


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        # After the command (in parentheses, and it may hold spaces) come the fields from state (3)
        # on: utime and stime are fields 14 and 15.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def open_file_limit(pid: int) -> int:
    """The soft open-file limit in force in the process, from /proc/PID/limits."""
    return proc_value(pid, "limits", "Max open files", 3)


@dataclass(frozen=True)
class Usage:
    server_cpu: float  # seconds
    wall: float  # seconds
    generator_cpu: float  # seconds this process (the load generator) used meanwhile


class Meter:
    """The server's CPU time, the wall clock and the load generator's CPU time, from now on."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._server_cpu = server_cpu_seconds(pid)
        self._wall = time.perf_counter()
        self._generator_cpu = time.process_time()

    def read(self) -> Usage:
        return Usage(
            server_cpu_seconds(self.pid) - self._server_cpu,
            time.perf_counter() - self._wall,
            time.process_time() - self._generator_cpu,
        )


# --- the load generator ------------------------------------------------------------------------


def request_bytes(
    method: str, path: str, port: int, body: bytes = b"", *, stream: bool = False, after: int | None = None
) -> bytes:
    headers = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    if stream:
        # One stream per connection: the server closes it after the terminal event.
        headers += ["Accept: text/event-stream", "Connection: close"]
    if after is not None:
        headers.append(f"Last-Event-ID: {after}")
    if method == "POST":
        headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class KeepAlive:
    """One keep-alive HTTP/1.1 connection for plain requests, one at a time, read by Content-Length."""

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.port = port
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> KeepAlive:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(port, reader, writer)

    async def call(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        self.writer.write(request_bytes(method, path, self.port, body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = CONTENT_LENGTH.search(head)
        if length is None:
            raise RuntimeError(f"{method} {path}: a response without Content-Length: {head[:200]!r}")
        return int(head[9:12]), await self.reader.readexactly(int(length.group(1)))

    async def create(self, topic: str) -> str:
        status, body = await self.call("POST", "/api/sessions", ujson.dumps({"topic": topic}).encode())
        if status != 201:
            raise RuntimeError(f"POST /api/sessions: {status} {body[:200]!r}")
        return str(ujson.loads(body)["id"])

    def close(self) -> None:
        self.writer.close()


class Dechunker:
    """The body of a chunked response from its bytes as they come (chunk extensions and trailers ignored)."""

    def __init__(self) -> None:
        self._pending = b""  # the start of a size line not yet complete
        self._left = 0  # bytes of the current chunk still to come
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        body: list[bytes] = []
        position = 0
        while position < len(buffer) and not self.finished:
            if self._left:
                take = min(self._left, len(buffer) - position)
                body.append(buffer[position : position + take])
                position += take
                self._left -= take
                continue
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            line = buffer[position:line_end]
            position = line_end + 2
            if line:  # a blank line is the CRLF that closes the previous chunk
                self._left = int(line.split(b";", 1)[0], 16)
                self.finished = self._left == 0
        self._pending = buffer[position:] if not self.finished else b""
        return b"".join(body)


class EventStream(asyncio.Protocol):
    """One event stream on a connection of its own: the status, the time of the first byte, and the
    events, parsed as they arrive (each handed to `on_event` with the wall-clock time of its read)."""

    def __init__(self, on_event: EventHandler | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.on_event = on_event
        self.transport: asyncio.Transport | None = None
        self.answered: asyncio.Future[None] = loop.create_future()  # headers in (or the connection gone)
        self.ended: asyncio.Future[None] = loop.create_future()  # `final` in (or the connection gone)
        self.asked_at = 0.0
        self.first_byte_at = 0.0
        self.status = 0
        self.events = 0  # those with an id: every event of the session's log
        self.final = False
        self._head = b""
        self._dechunker: Dechunker | None = None
        self._parser = SSEParser()
        # While a list: each read is only noted, with its time, and parsed by `parse_recording`.
        self.recording: list[tuple[float, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def ask(self, path: str, method: str = "GET", after: int | None = None) -> None:
        """Send the request; with `after`, as a reconnection that saw the events up to that id."""
        assert self.transport is not None
        port = self.transport.get_extra_info("peername")[1]
        self.asked_at = time.perf_counter()
        self.transport.write(request_bytes(method, path, port, stream=True, after=after))

    def data_received(self, data: bytes) -> None:
        if not self.first_byte_at:
            self.first_byte_at = time.perf_counter()
        if self.recording is not None:
            self.recording.append((time.time(), data))
        else:
            self._take(data, time.time() if self.on_event else 0.0)

    def parse_recording(self) -> None:
        """Parse the reads noted since `recording` was set, as if they had been parsed on arrival."""
        recorded, self.recording = self.recording or [], None
        for received, data in recorded:
            self._take(data, received)

    def _take(self, data: bytes, received: float) -> None:
        if not self.answered.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._head[:end], self._head[end + 4 :]
            self.status = int(head[9:12])
            if b"transfer-encoding: chunked" in head.lower():
                self._dechunker = Dechunker()
            self.answered.set_result(None)
        if self._dechunker is not None:
            data = self._dechunker.feed(data)
        for event in self._parser.feed(data):
            if event.id is not None:
                self.events += 1
            if self.on_event is not None:
                self.on_event(self, event, received)
            if event.data.startswith(FINAL):
                self.final = True
                self._end()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_result(None)
        self._end()

    def _end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Fleet:
    """The streams a workload opens on a server, all closed when it ends, however it ends."""

    def __init__(self, port: int, on_event: EventHandler | None = None) -> None:
        self.port = port
        self.on_event = on_event
        self.streams: list[EventStream] = []
        self._gate = asyncio.Semaphore(CONNECT_PARALLEL)

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for stream in self.streams:
            stream.close()

    async def connect(self) -> EventStream:
        loop = asyncio.get_running_loop()
        _, stream = await loop.create_connection(partial(EventStream, self.on_event), HOST, self.port)
        self.streams.append(stream)
        return stream

    async def connect_many(self, count: int) -> list[EventStream]:
        """`count` connections, open and not yet asked for anything."""

        async def one() -> EventStream:
            async with self._gate:
                return await self.connect()

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def subscribe_many(self, paths: Sequence[str], after: int | None = None) -> list[EventStream]:
        """A stream of each path (`after`: see EventStream.ask), each asked once connected; done when
        the server answered them all (a few at a time, so the listen backlog never overflows)."""

        async def one(path: str) -> EventStream:
            async with self._gate:
                stream = await self.connect()
                stream.ask(path, after=after)
                await stream.answered
                return stream

        return list(await asyncio.gather(*(one(path) for path in paths)))


def run_path(session_id: str) -> str:
    return f"/api/sessions/{session_id}/run"


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll `condition` until it holds; the caller's timeout bounds it."""
    while not condition():
        await asyncio.sleep(POLL)


def check_streams(streams: Sequence[EventStream], *, finished: bool = True) -> None:
    """Raise if a stream was refused, or (with `finished`) ended without its `final` event."""
    refused = Counter(stream.status for stream in streams if stream.status != 200)
    if refused:
        raise RuntimeError(f"streams answered with status {dict(refused)}")
    unfinished = sum(not stream.final for stream in streams) if finished else 0
    if unfinished:
        raise RuntimeError(f"{unfinished} of {len(streams)} streams ended without `final`")


async def create_sessions(port: int, topics: Sequence[str]) -> list[str]:
    """The ids of new sessions, one per topic, created one after the other on one connection."""
    client = await KeepAlive.open(port)
    try:
        return [await client.create(topic) for topic in topics]
    finally:
        client.close()


async def run_to_final(fleet: Fleet, session_id: str) -> EventStream:
    """Start the session with POST /run and read its stream to the `final` event."""
    stream = await fleet.connect()
    stream.ask(run_path(session_id), "POST")
    await stream.ended
    check_streams([stream])
    return stream


# --- the workloads -----------------------------------------------------------------------------

Figures = dict[str, float]


async def census(server: ChildServer) -> Counter[tuple[str, str]]:
    """The events of one run (the census topic), counted per type and step."""
    counts: Counter[tuple[str, str]] = Counter()

    def count(_stream: EventStream, event: SSEEvent, _received: float) -> None:
        payload = ujson.loads(event.data)
        counts[payload["type"], payload.get("step_id", "")] += 1

    [session_id] = await create_sessions(server.port, [CENSUS_TOPIC])
    async with Fleet(server.port, count) as fleet:
        await run_to_final(fleet, session_id)
    return counts


async def end_to_end(server: ChildServer, sessions: int, concurrency: int) -> tuple[Figures, str]:
    numbers = iter(range(sessions))
    events = 0

    async def worker(client: KeepAlive, fleet: Fleet) -> None:
        nonlocal events
        for number in numbers:  # shared: each worker takes the next session number
            session_id = await client.create(f"benchmark topic {number}")
            stream = await run_to_final(fleet, session_id)
            stream.close()
            events += stream.events
            status, body = await client.call("GET", f"/api/sessions/{session_id}/result")
            if status != 200:
                raise RuntimeError(f"GET /result: {status} {body[:200]!r}")

    clients = [await KeepAlive.open(server.port) for _ in range(concurrency)]
    try:
        async with Fleet(server.port) as fleet:
            meter = Meter(server.proc.pid)
            await asyncio.gather(*(worker(client, fleet) for client in clients))
            usage = meter.read()
    finally:
        for client in clients:
            client.close()
    figures = {"e2e_cpu": 1e6 * usage.server_cpu / events, "e2e_rate": sessions / usage.wall}
    return figures, f"{sessions} sessions, {events:,} events in {usage.wall:.1f} s; {cpu_note(usage)}"


async def first_byte(server: ChildServer, runs: int, rounds: int) -> tuple[Figures, str]:
    waits: list[float] = []
    for round_number in range(rounds):
        topics = [f"first byte {round_number}.{i}" for i in range(runs)]
        session_ids = await create_sessions(server.port, topics)
        async with Fleet(server.port) as fleet:
            # Connected first, so the figure is the server's answer, not the TCP handshake.
            streams = await fleet.connect_many(runs)
            for stream, session_id in zip(streams, session_ids, strict=True):
                stream.ask(run_path(session_id), "POST")
            await asyncio.gather(*(stream.ended for stream in streams))
            check_streams(streams)
            waits += [stream.first_byte_at - stream.asked_at for stream in streams]
    p50, p99 = 1000 * percentile(waits, 0.5), 1000 * percentile(waits, 0.99)
    slowest = 1000 * max(waits)
    note = f"{rounds} rounds of {runs} runs at once: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {slowest:.1f} ms"
    return {"first_byte_p99": p99}, note


async def fan_out(server: ChildServer, subscribers: int, replay: bool) -> tuple[Figures, str]:
    [session_id] = await create_sessions(server.port, ["fan-out"])
    async with Fleet(server.port) as fleet:
        if replay:
            await run_to_final(fleet, session_id)
        streams = await fleet.connect_many(subscribers)
        meter = Meter(server.proc.pid)
        for stream in streams:
            stream.ask(run_path(session_id))
        await asyncio.gather(*(stream.ended for stream in streams))
        usage = meter.read()
        check_streams(streams)
    delivered = sum(stream.events for stream in streams)
    key = "replay_cpu" if replay else "live_cpu"
    note = f"{subscribers} streams, {delivered:,} events delivered in {usage.wall:.2f} s; {cpu_note(usage)}"
    return {key: 1e6 * usage.server_cpu / delivered}, note


async def creates(server: ChildServer, connections: int, seconds: float) -> tuple[Figures, str]:
    body = ujson.dumps({"topic": "create rate"}).encode()
    clients = [await KeepAlive.open(server.port) for _ in range(connections)]
    stop_at = time.perf_counter() + seconds

    async def worker(client: KeepAlive) -> int:
        done = 0
        while time.perf_counter() < stop_at:
            status, answer = await client.call("POST", "/api/sessions", body)
            if status != 201:
                raise RuntimeError(f"POST /api/sessions: {status} {answer[:200]!r}")
            done += 1
        return done

    try:
        meter = Meter(server.proc.pid)
        total = sum(await asyncio.gather(*(worker(client) for client in clients)))
        usage = meter.read()
    finally:
        for client in clients:
            client.close()
    figures = {"create_rate": total / usage.wall, "create_cpu": 1e6 * usage.server_cpu / total}
    return figures, f"{total:,} creates in {usage.wall:.1f} s; {cpu_note(usage)}"


class LatencyProbe:
    """Times each event produced after `since` (wall clock): from its `timestamp` to its parse on each
    stream, and from its first receipt on any stream to its receipt on each."""

    def __init__(self) -> None:
        self.since = float("inf")  # nothing counts until every stream has been answered
        self.until = float("inf")
        self.from_timestamp: list[float] = []
        self._produced: dict[str, float] = {}  # by event id: each is decoded once, not per stream
        self._receipts: list[tuple[str, float]] = []  # (event id, time read), in no particular order

    @property
    def live_events(self) -> int:
        return len({event_id for event_id, _ in self._receipts})

    def from_first(self) -> list[float]:
        first: dict[str, float] = {}
        for event_id, received in self._receipts:
            first[event_id] = min(received, first.get(event_id, received))
        return [received - first[event_id] for event_id, received in self._receipts]

    def __call__(self, _stream: EventStream, event: SSEEvent, received: float) -> None:
        if event.id is None or received > self.until:
            return
        produced = self._produced.get(event.id)
        if produced is None:
            stamp = ujson.loads(event.data)["timestamp"]
            produced = self._produced[event.id] = datetime.fromisoformat(stamp).timestamp()
        if produced <= self.since:
            return  # produced before every stream was there: a replay, not a delivery
        self._receipts.append((event.id, received))
        self.from_timestamp.append(received - produced)


async def latency(server: ChildServer, subscribers: int, window: float) -> tuple[Figures, str]:
    [session_id] = await create_sessions(server.port, ["latency"])
    probe = LatencyProbe()
    async with Fleet(server.port, probe) as fleet:
        starter = await fleet.connect()
        starter.ask(run_path(session_id), "POST")
        await starter.answered
        # The others ask as reconnections that have seen everything: no replay, only what comes next.
        followers = await fleet.subscribe_many([run_path(session_id)] * (subscribers - 1), after=LIVE_ONLY)
        streams = [starter, *followers]
        check_streams(streams, finished=False)
        # A thousand streams parsing as they read would delay each other's reads on these shared
        # cores, and that delay would be counted as the server's: reads are timed and kept, and
        # parsed after the window.
        for stream in streams:
            stream.recording = []
        # Nor may this process's own garbage collection pause the reads: a full collection, of
        # all that earlier workloads left here, can take tens of milliseconds.
        gc.collect()
        gc.disable()
        probe.since = time.time()
        before = sum(stream.events for stream in streams)
        meter = Meter(server.proc.pid)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(window):
                    await asyncio.gather(*(stream.ended for stream in streams))
        finally:
            gc.enable()
        probe.until = time.time()
        usage = meter.read()
        for stream in streams:
            stream.parse_recording()
        delivered = sum(stream.events for stream in streams) - before
    if not probe.from_timestamp:
        raise RuntimeError(f"no event was produced in the {window:g} s after all streams were answered")
    p50, p99 = (1000 * percentile(probe.from_timestamp, fraction) for fraction in (0.5, 0.99))
    spread = 1000 * percentile(probe.from_first(), 0.99)
    figures = {"latency_p99": p99, "spread_p99": spread, "paced_cpu": 1e6 * usage.server_cpu / delivered}
    note = (
        f"{len(probe.from_timestamp):,} receipts of {probe.live_events} live events over {usage.wall:.1f} s: "
        f"from timestamp p50 {p50:.1f} ms, p99 {p99:.1f} ms; after first receipt p99 {spread:.1f} ms; "
        f"{cpu_note(usage)}"
    )
    return figures, note


async def idle_streams(server: ChildServer, streams: int, sessions: int) -> tuple[Figures, str]:
    limit = open_file_limit(server.proc.pid)  # it has to have raised its own, or have inherited ours
    if limit < streams + sessions + FD_RESERVE // 2:
        raise RuntimeError(f"the server's open-file limit is {limit:,}: too low for {streams:,} streams")
    session_ids = await create_sessions(server.port, [f"idle {i}" for i in range(sessions)])
    async with Fleet(server.port) as fleet:
        starters = await fleet.connect_many(sessions)
        for starter, session_id in zip(starters, session_ids, strict=True):
            starter.ask(run_path(session_id), "POST")
        # Each run has written its step-start and first piece, and sleeps until the next one.
        await wait_until(lambda: all(starter.events >= 2 for starter in starters))
        await asyncio.sleep(SETTLE)
        before = rss_kib(server.proc.pid)
        paths = [run_path(session_ids[i % sessions]) for i in range(streams)]
        meter = Meter(server.proc.pid)
        followers = await fleet.subscribe_many(paths)
        await wait_until(lambda: all(follower.events >= 2 for follower in followers))
        await asyncio.sleep(SETTLE)
        after = rss_kib(server.proc.pid)
        usage = meter.read()
        check_streams(followers, finished=False)
        ended = sum(stream.ended.done() for stream in fleet.streams)
        if ended:
            raise RuntimeError(f"{ended} streams ended while they should have stayed open and idle")
    per_stream = (after - before) / streams
    note = (
        f"{streams:,} streams on {sessions} sessions (server open-file limit {limit:,}) opened in "
        f"{usage.wall:.1f} s; RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB; {cpu_note(usage)}"
    )
    return {"idle_kib": per_stream}, note


def cpu_note(usage: Usage) -> str:
    return f"server CPU {usage.server_cpu:.2f} s, load generator CPU {usage.generator_cpu:.2f} s"


# --- the servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """A server under test: the reference, or this service on a store."""

    name: str
    store: str | None  # None: the reference

    def start(self, scratch: Path, pace: float, service_options: Sequence[str] = ()) -> ChildServer:
        """A fresh server at `pace` characters per second; `service_options` go to server.py only."""
        log = scratch / f"{self.name}-{pace:g}.log"
        if self.store is None:
            command = [sys.executable, "-m", "bench.reference", "--port", "0", "--pace", f"{pace:g}"]
            return ChildServer(command, log)
        db = scratch / f"{self.name}-{pace:g}.db" if self.store == "sqlite" else None
        return BenchServer(log, db, [f"--pace={pace:g}", *service_options])


REFERENCE = Contender("reference", None)
CONTENDERS = (REFERENCE, Contender("sqlite", "sqlite"), Contender("memory", "memory"))


@contextlib.contextmanager
def running(server: ChildServer) -> Iterator[ChildServer]:
    try:
        yield server
    finally:
        server.terminate()


async def attempt(
    contender: str, what: str, work: Awaitable[tuple[Figures, str]], deadline: float
) -> Figures:
    """The workload's figures, with a line saying what it measured; none if it failed or ran out of time."""
    try:
        async with asyncio.timeout(deadline):
            figures, note = await work
    except TimeoutError:
        print(f"  {contender:<9} {what}: did not finish in {deadline:g} s", flush=True)
        return {}
    except (OSError, EOFError, RuntimeError, ValueError) as exc:
        print(f"  {contender:<9} {what}: failed: {exc}", flush=True)
        return {}
    print(f"  {contender:<9} {what}: {note}", flush=True)
    return figures


@dataclass
class Measured:
    figures: Figures
    census: Counter[tuple[str, str]]


async def measure(contender: Contender, scratch: Path, args: argparse.Namespace) -> Measured:
    name, deadline = contender.name, args.deadline
    figures: Figures = {}
    with running(contender.start(scratch, 0.0)) as server:
        events = await census(server)
        figures |= await attempt(
            name, "end to end", end_to_end(server, args.sessions, args.concurrency), deadline
        )
        figures |= await attempt(
            name, "first byte", first_byte(server, args.first_byte_runs, args.first_byte_rounds), deadline
        )
        figures |= await attempt(name, "fan-out live", fan_out(server, args.subscribers, False), deadline)
        figures |= await attempt(name, "fan-out replay", fan_out(server, args.subscribers, True), deadline)
        # Last on this server: the sessions it leaves (pending, by the thousand) weigh on nothing after.
        figures |= await attempt(
            name, "creates", creates(server, args.create_connections, args.create_seconds), deadline
        )
    # A run cut off by the end of a workload is not waited for at SIGTERM.
    quick_stop = ["--shutdown_timeout=1"]
    with running(contender.start(scratch, args.latency_pace, quick_stop)) as server:
        figures |= await attempt(
            name, "latency", latency(server, args.latency_subscribers, args.latency_seconds), deadline
        )
    # Runs at pace 1 would hit the step timeout long before they end, and every stream is a connection.
    idle_options = [
        *quick_stop,
        "--step_timeout=36000",
        f"--max_connections={args.idle_streams + FD_RESERVE}",
    ]
    with running(contender.start(scratch, IDLE_PACE, idle_options)) as server:
        figures |= await attempt(
            name, "idle streams", idle_streams(server, args.idle_streams, args.idle_sessions), deadline
        )
    return Measured(figures, events)


async def measure_floor(scratch: Path, args: argparse.Namespace) -> Figures:
    """What Tornado alone costs per create (bench/floor.py), under the same create workload."""
    command = [sys.executable, "-m", "bench.floor", "--port", "0"]
    with running(ChildServer(command, scratch / "floor.log")) as server:
        work = creates(server, args.create_connections, args.create_seconds)
        return await attempt("floor", "creates", work, args.deadline)


def print_floor(args: argparse.Namespace, floor: Figures, reference: Measured | None) -> None:
    """The floor's figures, and what they bound: the create ratio, and the first byte of many runs."""
    cpu = floor.get("create_cpu")
    if cpu is None:
        return
    base = reference.figures.get("create_cpu") if reference is not None else None
    share = f", {cpu / base:.2f}x the reference's whole create" if base else ""
    runs = args.first_byte_runs
    print(
        f"floor: Tornado alone (bench/floor.py, a bare handler answering the create) used {cpu:.0f} µs of "
        f"server CPU per request{share} ({floor['create_rate']:,.0f}/s). {runs} requests at once, at that "
        f"cost each, put the last answer {runs * cpu / 1000:.1f} ms behind the first, before any work."
    )


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A performance target, on this service's figure itself or on its ratio to the reference's."""

    bound: float
    on_ratio: bool
    at_least: bool = False

    def text(self, unit: str) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.bound:g}{'x' if self.on_ratio else ' ' + unit}"

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        subject = ratio if self.on_ratio else value
        if subject is None:
            return None
        return subject >= self.bound if self.at_least else subject <= self.bound


@dataclass(frozen=True)
class Figure:
    label: str
    unit: str
    target: Target | None = None


def figure_table(args: argparse.Namespace) -> dict[str, Figure]:
    return {
        "e2e_cpu": Figure(
            f"server CPU per event, end to end ({args.concurrency} at a time)", "µs", Target(0.7, True)
        ),
        "e2e_rate": Figure("  sessions end to end (wall clock)", "/s"),
        "create_rate": Figure(
            f"POST /api/sessions, {args.create_connections} keep-alive conns",
            "req/s",
            Target(1.0, True, at_least=True),
        ),
        "create_cpu": Figure("  server CPU per create", "µs"),
        "live_cpu": Figure(
            f"server CPU per delivered event, {args.subscribers} live", "µs", Target(0.2, True)
        ),
        "replay_cpu": Figure(
            f"server CPU per delivered event, {args.subscribers} replay", "µs", Target(0.2, True)
        ),
        "idle_kib": Figure(
            f"memory per idle open stream ({args.idle_streams:,} streams)", "KiB", Target(15, False)
        ),
        "latency_p99": Figure(
            f"p99 delivery latency, {args.latency_subscribers:,} live (from timestamp)",
            "ms",
            Target(50, False),
        ),
        "spread_p99": Figure("  p99 after the first receipt of the event", "ms"),
        "paced_cpu": Figure("  server CPU per delivered event, those streams", "µs"),
        "first_byte_p99": Figure(
            f"first byte after POST /run, p99 at {args.first_byte_runs} at once", "ms", Target(5, False)
        ),
    }


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def verdict(checks: Sequence[bool | None]) -> str:
    if not checks or any(check is None for check in checks):
        return "?"
    return "yes" if all(checks) else "no"


def print_table(args: argparse.Namespace, results: dict[str, Figures]) -> None:
    ours = [name for name in results if name != REFERENCE.name]
    columns = [REFERENCE.name, *ours]
    header = f"{'figure':<58} {'unit':<6}" + "".join(f"{name:>10}" for name in columns)
    header += "".join(f"{name + ' ÷ ref':>14}" for name in ours) + f"  {'target':<9} met"
    print(header)
    print("-" * len(header))
    reference = results.get(REFERENCE.name, {})
    for key, figure in figure_table(args).items():
        row = f"{figure.label:<58} {figure.unit:<6}"
        row += "".join(f"{number(results.get(name, {}).get(key)):>10}" for name in columns)
        checks: list[bool | None] = []
        for name in ours:
            value, base = results[name].get(key), reference.get(key)
            ratio = value / base if value is not None and base else None
            row += f"{'-' if ratio is None else f'{ratio:.2f}x':>14}"
            if figure.target is not None:
                checks.append(figure.target.met(value, ratio))
        if figure.target is not None:
            row += f"  {figure.target.text(figure.unit):<9} {verdict(checks)}"
        print(row)


def print_census(censuses: dict[str, Counter[tuple[str, str]]]) -> None:
    totals = ", ".join(f"{name} {sum(counts.values())}" for name, counts in censuses.items())
    print(f"events of one run ({CENSUS_TOPIC!r}), the `connected` one included: {totals}")
    reference = censuses.get(REFERENCE.name)
    for name, counts in censuses.items():
        if reference is not None and counts != reference:
            differ = sorted(key for key in set(counts) | set(reference) if counts[key] != reference[key])
            shown = ", ".join(
                f"{kind} {step}: {counts[kind, step]} vs {reference[kind, step]}" for kind, step in differ
            )
            print(f"  {name} streams other counts than the reference ({shown})")
    if reference is not None and all(counts == reference for counts in censuses.values()):
        deltas = "/".join(str(n) for (kind, _), n in sorted(reference.items()) if kind == "step-delta")
        print(f"  the same per type and step everywhere (step-delta per step: {deltas})")


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to the hard one (the servers inherit it); the limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=300, help="end to end")
    parser.add_argument("--concurrency", type=int, default=16, help="end to end: sessions at a time")
    parser.add_argument("--create-connections", type=int, default=16)
    parser.add_argument("--create-seconds", type=float, default=4.0)
    parser.add_argument("--subscribers", type=int, default=500, help="fan-out: streams of one session")
    parser.add_argument("--idle-streams", type=int, default=10_000, help="up to the open-file limit (50,000)")
    parser.add_argument(
        "--idle-sessions", type=int, default=10, help="running sessions the idle streams follow"
    )
    parser.add_argument("--latency-subscribers", type=int, default=1000)
    parser.add_argument("--latency-pace", type=float, default=SHIPPED_PACE, help="characters per second")
    parser.add_argument("--latency-seconds", type=float, default=5.0, help="how long live events are timed")
    parser.add_argument("--first-byte-runs", type=int, default=50, help="runs started at once")
    parser.add_argument("--first-byte-rounds", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds one workload may take")
    parser.add_argument(
        "--only",
        default=",".join([*(c.name for c in CONTENDERS), "floor"]),
        help="comma-separated servers to measure (floor: Tornado alone, bench/floor.py)",
    )
    return parser.parse_args(argv)


async def run_all(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    began = time.monotonic()
    hard_limit = raise_open_file_limit()
    print(
        f"compare: this service against the reference (bench/reference.py: starlette {version('starlette')}, "
        f"sse-starlette {version('sse-starlette')}, uvicorn {version('uvicorn')}, asyncio loop, h11)"
    )
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    print(
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {socket.gethostname()} ({platform.machine()}), "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load average before: {load}"
    )
    most = hard_limit - FD_RESERVE
    if args.idle_streams > most:
        print(
            f"note: idle streams cut from {args.idle_streams:,} to {most:,}: this machine's hard open-file "
            f"limit is {hard_limit:,} (ulimit -Hn), and each stream holds a descriptor in both processes"
        )
        args.idle_streams = most
    contenders = [c for c in CONTENDERS if c.name in args.only.split(",")]
    print()
    measured: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for contender in contenders:
            measured[contender.name] = await measure(contender, Path(scratch), args)
        floor = await measure_floor(Path(scratch), args) if "floor" in args.only.split(",") else {}
    print()
    print_census({name: m.census for name, m in measured.items()})
    print()
    print_table(args, {name: m.figures for name, m in measured.items()})
    print()
    print_floor(args, floor, measured.get(REFERENCE.name))
    print(
        "ratio: this service ÷ reference. CPU: user+sys of the server process (/proc/PID/stat). Latency: "
        "receipt time minus the event's `timestamp`, which has millisecond resolution (so up to 1 ms too "
        "high), both on this machine's clock; the load generator shares the cores, its delays included."
    )
    print(f"took {time.monotonic() - began:.0f} s")


def main() -> int:
    asyncio.run(run_all(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
