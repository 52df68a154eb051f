"""The fan-out benchmark's load generator: many raw-socket SSE subscribers in a process of their own.

`python -m bench.subscribers PORT CONNECTIONS PER_SESSION TIMEOUT SESSION_ID...` talks with the
benchmark a line at a time:

1. it opens CONNECTIONS connections to 127.0.0.1:PORT and prints their local ports as JSON;
2. it reads the JSON list of ports to keep (PER_SESSION for each session), closes the others and
   prints `ready` (so the benchmark can choose how the streams are split over a server's workers);
3. at the next line it asks for every stream (GET /api/sessions/{id}/run) and counts the `id:` lines
   that arrive until each stream has ended (the server closes it after the terminal event), or TIMEOUT
   seconds have passed, and prints one JSON line of figures.

A stream here costs a small fraction of what it costs the server, so with the server on the same
cores the server stays the bottleneck: no HTTP client and no SSE parser, only a byte count of
`\\nid: ` per read; and the reads are done in sweeps a few milliseconds apart, so one read takes all
the events that arrived on a connection since the last (the server is not slowed by it: its writes
only have to reach the kernel's socket buffer).
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

ID_LINE = b"\nid: "  # every event with an id follows a newline: the one before it, or a chunk header
FINAL = b'data: {"type":"final"'
TERMINAL = (FINAL, b'data: {"type":"error"')
CARRY = max(len(marker) for marker in (ID_LINE, *TERMINAL)) - 1  # bytes kept from one read for the next
CONNECT_TIMEOUT = 10.0  # for one connection
# Seconds between two connections. Together, they would queue at the port, and with two workers
# sharing it the first to wake would take the whole queue.
CONNECT_PAUSE = 0.002
SWEEP_PAUSE = 0.005  # seconds between two sweeps of reads
READ_SIZE = 1 << 20


class Subscriber:
    """One connection, then one stream on it: counts its events and notes how the stream ended."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
        self.port = int(self.sock.getsockname()[1])
        self.events = 0
        self.status = b""
        self.ending = b""  # the start of the terminal event's frame, once it arrived
        self.carry = b""
        self.ended: float | None = None

    def ask(self, server_port: int, session_id: str) -> None:
        self.sock.sendall(
            f"GET /api/sessions/{session_id}/run HTTP/1.1\r\nHost: 127.0.0.1:{server_port}\r\n"
            "Accept: text/event-stream\r\nConnection: close\r\n\r\n".encode()
        )
        self.sock.setblocking(False)

    def read(self) -> bool:
        """Take what has arrived; False once the server has closed the stream."""
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return True
        except OSError:
            data = b""  # reset: an end too, and not a `final` one
        if not data:
            self.ended = time.monotonic()
            self.sock.close()
            return False
        if not self.status:
            self.status = data[9:12]  # "HTTP/1.1 200 OK"
        joined = self.carry + data
        self.events += joined.count(ID_LINE)
        for marker in TERMINAL:
            if marker in joined:
                self.ending = marker
        self.carry = joined[-CARRY:]
        return True


def read_line() -> str:
    """The benchmark's next line; EOF means it gave up, and nothing more is to be done."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError("stdin closed")
    return line


def sweep(
    selector: selectors.BaseSelector, until: float, done: Callable[[], bool], pause: float = SWEEP_PAUSE
) -> None:
    """Read every stream that has data, a sweep every `pause` s, until `done()` or the deadline."""
    while not done():
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError
        for key, _ in selector.select(left):
            subscriber: Subscriber = key.data
            if not subscriber.read():
                selector.unregister(key.fileobj)
        time.sleep(pause)


def stream(
    port: int, connections: int, per_session: int, session_ids: list[str], timeout: float
) -> dict[str, Any]:
    opened = []
    for _ in range(connections):
        opened.append(Subscriber(port))
        time.sleep(CONNECT_PAUSE)
    print(json.dumps([subscriber.port for subscriber in opened]), flush=True)
    keep = set(json.loads(read_line()))
    subscribers = [subscriber for subscriber in opened if subscriber.port in keep]
    for subscriber in opened:
        if subscriber.port not in keep:
            subscriber.sock.close()
    if len(subscribers) != per_session * len(session_ids):
        return {
            "error": f"{len(subscribers)} connections kept for {len(session_ids)} x {per_session} streams"
        }
    print("ready", flush=True)
    read_line()
    began, cpu_began = time.monotonic(), time.process_time()
    until = began + timeout
    selector = selectors.DefaultSelector()
    # A session's first stream starts its run; the others ask once it has answered, so that two
    # processes of a server never race each other to start the same session. Then the rest, session
    # by session in turn, so each session's streams are spread over the workers as the connections are.
    firsts, others = subscribers[: len(session_ids)], subscribers[len(session_ids) :]
    for subscriber, session_id in zip(firsts, session_ids, strict=True):
        subscriber.ask(port, session_id)
        selector.register(subscriber.sock, selectors.EVENT_READ, subscriber)
    try:
        sweep(selector, until, lambda: all(s.status or s.ended is not None for s in firsts), pause=0)
        for index, subscriber in enumerate(others):
            subscriber.ask(port, session_ids[index % len(session_ids)])
            selector.register(subscriber.sock, selectors.EVENT_READ, subscriber)
        sweep(selector, until, lambda: not selector.get_map())
    except TimeoutError:
        unfinished = sum(subscriber.ended is None for subscriber in subscribers)
        return {"error": f"{unfinished} of {len(subscribers)} streams had not ended after {timeout:g} s"}
    finally:
        selector.close()
        for subscriber in subscribers:
            subscriber.sock.close()
    return {
        "began": began,
        "ended": max(subscriber.ended or began for subscriber in subscribers),
        "streams": len(subscribers),
        "events": sum(subscriber.events for subscriber in subscribers),
        "not_ok": sum(subscriber.status != b"200" for subscriber in subscribers),
        "statuses": sorted({subscriber.status.decode(errors="replace") for subscriber in subscribers}),
        "not_final": sum(subscriber.ending != FINAL for subscriber in subscribers),
        "cpu_seconds": time.process_time() - cpu_began,
    }


def main(argv: list[str]) -> int:
    port, connections, per_session, timeout, *session_ids = argv
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one descriptor per connection
    try:
        figures = stream(int(port), int(connections), int(per_session), session_ids, float(timeout))
    except EOFError:
        return 1  # the benchmark has stopped; it is no longer listening for figures
    print(json.dumps(figures), flush=True)
    return 1 if "error" in figures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
