"""Running out of file descriptors: the connection cap, the accept back-off and their log throttle."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
import tornado.web

from conf.settings import Settings
from listener import BackoffAcceptor, CappedHTTPServer, LogThrottle, connection_cap
from tests.server_process import PROJECT, ServerProcess

# The child's limit, soft and hard alike: the server raises soft to hard at start, so both are set.
FD_LIMIT = 256
# The start of a request head that never ends: the server must hold the connection waiting for it.
HALF_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
ACCEPT_TROUBLE = re.compile(r"too many open files|accept|refused", re.IGNORECASE)


def open_slow_connections(port: int, count: int, deadline: float) -> tuple[list[socket.socket], int]:
    """Open up to `count` connections that each send half a request head and stall; return the
    ones still open on our side and how many connects timed out."""
    opened: list[socket.socket] = []
    timed_out = 0
    # A full listen queue drops the SYN, so connect waits for retransmits: a short timeout, and
    # after a few of those the queue is not draining and further attempts would only wait too.
    while len(opened) + timed_out < count and timed_out < 3 and time.monotonic() < deadline:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(0.25)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            timed_out += 1
            continue
        try:
            sock.sendall(HALF_HEAD)
            # From here on only polled (see still_held), never waited on.
            sock.setblocking(False)
        except OSError:
            # Refused by the cap before the bytes went out: the server closed it, so do we.
            sock.close()
            continue
        opened.append(sock)
    return opened, timed_out


def still_held(sock: socket.socket) -> bool:
    """True while the server keeps the connection: nothing to read yet, no end of stream, no reset."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def get_health(port: int, deadline: float) -> tuple[int, float]:
    """GET /health on new connections (1 s each) until one answers or `deadline`; (status, seconds)."""
    while True:
        started = time.monotonic()
        try:
            with requests.get(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                return response.status_code, time.monotonic() - started
        except requests.RequestException:
            if time.monotonic() > deadline:
                return 0, time.monotonic() - started
            time.sleep(0.05)


def saturate_and_measure(server: ServerProcess, attempts: int, window: float = 2.5) -> dict[str, Any]:
    """Hold `attempts` slow connections against `server`, then measure its CPU over `window`
    seconds and count its log lines about accepting; close every socket before returning."""
    sockets: list[socket.socket] = []
    try:
        lines_before = len(server.lines)
        sockets, timed_out = open_slow_connections(server.port, attempts, time.monotonic() + 10)
        # Give the server a moment to accept (or refuse) what is queued before measuring it.
        time.sleep(0.3)
        cpu_before, started = server.cpu_seconds(), time.monotonic()
        time.sleep(window)
        cpu = (server.cpu_seconds() - cpu_before) / (time.monotonic() - started)
        held = [sock for sock in sockets if still_held(sock)]
        log = server.lines[lines_before:]
        return {
            "attempts": attempts,
            "connect_timeouts": timed_out,
            "held": len(held),
            "cpu": cpu,
            "log_lines": len(log),
            "accept_log_lines": sum(1 for line in log if ACCEPT_TROUBLE.search(line)),
            "log_bytes": sum(len(line) for line in log),
            "alive": server.proc.poll() is None,
            "sockets": sockets,
            "held_sockets": held,
        }
    except BaseException:
        for sock in sockets:
            sock.close()
        raise


def summary(figures: dict[str, Any]) -> str:
    shown = {k: v for k, v in figures.items() if not k.endswith("sockets")}
    return ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


def test_a_server_at_its_file_limit_refuses_the_excess_cheaply_and_still_answers_health():
    cap = connection_cap(Settings().max_connections, FD_LIMIT)
    server = ServerProcess("--host=127.0.0.1", fd_limit=FD_LIMIT)
    figures: dict[str, Any] = {}
    try:
        # More attempts than the process has descriptors, and 200 past the cap.
        figures = saturate_and_measure(server, cap + 200)
        # The cap is full of our stalled connections, so a new one is refused by design; freeing a
        # few of ours must make room for /health at once (a spinning or queue-bound server cannot).
        for sock in figures["held_sockets"][:5]:
            sock.close()
        status, seconds = get_health(server.port, time.monotonic() + 3)
        figures.update(health=status, health_seconds=seconds)
        print(summary(figures))
        assert figures["alive"], summary(figures)
        assert figures["cpu"] < 0.3, summary(figures)
        assert figures["accept_log_lines"] < 50 and figures["log_bytes"] < 100_000, summary(figures)
        assert figures["held"] <= cap, summary(figures)
        assert status == 200 and seconds < 1, summary(figures)
    finally:
        for sock in figures.get("sockets", []):
            sock.close()
        server.kill()


# A server with no effective cap, so that accept itself runs into EMFILE: the back-off must hold.
UNCAPPED_SERVER = """
import asyncio, logging, tornado.netutil, tornado.web
from listener import CappedHTTPServer

class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("hello")

async def main():
    logging.basicConfig(level=logging.INFO)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = CappedHTTPServer(tornado.web.Application([(r"/", Hello)]), max_connections=100_000)
    server.add_sockets(sockets)
    logging.info("listening on http://127.0.0.1:%d", sockets[0].getsockname()[1])
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_accept_backs_off_instead_of_spinning_when_descriptors_run_out():
    server = ServerProcess(command=["-c", UNCAPPED_SERVER], fd_limit=64)
    figures: dict[str, Any] = {}
    try:
        figures = saturate_and_measure(server, 200)
        print(summary(figures))
        assert figures["alive"], summary(figures)
        assert "out of file descriptors (Too many open files)" in server.log_text(), summary(figures)
        assert figures["cpu"] < 0.3, summary(figures)
        assert figures["accept_log_lines"] < 50 and figures["log_bytes"] < 100_000, summary(figures)
        assert "Traceback" not in server.log_text()
    finally:
        for sock in figures.get("sockets", []):
            sock.close()
        server.kill()


def test_the_cap_leaves_a_reserve_of_descriptors_below_the_file_limit():
    assert connection_cap(4000, 1024) == 960
    assert connection_cap(4000, 65536) == 4000
    assert connection_cap(100, 1024) == 100
    assert connection_cap(4000, 256) == 192
    # A tiny limit still leaves half of it to connections rather than none.
    assert connection_cap(4000, 64) == 32
    assert connection_cap(4000, resource.RLIM_INFINITY) == 4000


def test_the_soft_limit_is_raised_to_the_hard_limit():
    done = subprocess.run(
        [sys.executable, "-c", "from listener import raise_open_file_limit; print(raise_open_file_limit())"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (100, 300)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "300"


def test_the_throttle_logs_once_per_interval_with_the_count_it_held_back(caplog):
    now = [100.0]
    throttle = LogThrottle(logging.getLogger("test.throttle"), interval=5, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        assert throttle("accept failed: %s", "EMFILE")
        for _ in range(1000):
            now[0] += 0.004
            assert not throttle("accept failed: %s", "EMFILE")
        now[0] += 1.1
        assert throttle("accept failed: %s", "EMFILE")
    assert [r.getMessage() for r in caplog.records] == [
        "accept failed: EMFILE (0 more suppressed)",
        "accept failed: EMFILE (1000 more suppressed)",
    ]


class FlakySocket(socket.socket):
    """A real listening socket whose first `failures` accepts fail with EMFILE."""

    failures = 0
    calls = 0

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return super().accept()


def listening_flaky_socket(failures: int) -> FlakySocket:
    sock = FlakySocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    sock.failures = failures
    return sock


async def wait_until(condition: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.gen_test
async def test_the_acceptor_pauses_on_emfile_then_accepts(caplog):
    listening = listening_flaky_socket(failures=3)
    client = socket.create_connection(listening.getsockname(), timeout=5)
    accepted: list[socket.socket] = []
    acceptor = BackoffAcceptor(listening, lambda conn, addr: accepted.append(conn), min_pause=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="orchestrator.listener"):
            acceptor.start()
            await wait_until(lambda: accepted, timeout=5)
        # Three failures, three pauses (0.05, 0.1, 0.2 s), then the accept and the EAGAIN that ends
        # the batch: no retry in between.
        assert listening.calls == 5 and acceptor.failures == 3
        assert len([r for r in caplog.records if "out of file descriptors" in r.getMessage()]) == 1
    finally:
        acceptor.remove()
        for sock in (*accepted, client, listening):
            sock.close()


@pytest.mark.gen_test
async def test_removing_the_acceptor_during_a_pause_stops_it_for_good():
    listening = listening_flaky_socket(failures=1)
    client = socket.create_connection(listening.getsockname(), timeout=5)
    acceptor = BackoffAcceptor(listening, lambda conn, addr: conn.close(), min_pause=0.05)
    try:
        acceptor.start()
        await wait_until(lambda: acceptor.failures == 1, timeout=5)
        acceptor.remove()
        await asyncio.sleep(0.2)  # four pauses' worth: a resume would have accepted by now
        assert listening.calls == 1
    finally:
        acceptor.remove()
        client.close()
        listening.close()


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("hello")


@pytest.mark.gen_test
async def test_past_the_cap_a_connection_is_closed_at_once_and_a_freed_slot_is_reused():
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    address = listening.getsockname()
    server = CappedHTTPServer(tornado.web.Application([(r"/", Hello)]), max_connections=2)
    server.add_sockets([listening])
    writers: list[asyncio.StreamWriter] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(*address)
        writers.append(writer)
        return reader, writer

    try:
        for _ in range(2):
            _, writer = await connect()
            writer.write(HALF_HEAD)
        await wait_until(lambda: server.open_connections == 2, timeout=5)
        reader, _ = await connect()
        # Refused: the end of the stream without a byte, and nothing parsed.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert server.refused == 1 and server.open_connections == 2
        writers[0].close()
        await wait_until(lambda: server.open_connections == 1, timeout=5)
        reader, writer = await connect()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).endswith(b"hello")
    finally:
        server.stop()
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        await server.close_all_connections()
