"""systemd: the notify protocol as a real server process speaks it to a socket the test owns (READY=1,
STATUS=, WATCHDOG=1, STOPPING=1), /ready for load balancers, and conf/orchestrator.service itself.

Every wait has a deadline. Where a test asserts that something does not arrive, it does so over a
window in which the server provably could not send it (stopped, or exited), or says how long it
watched.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from conf.settings import settings_for_tests
from listener.limits import FD_RESERVE
from listener.systemd import SystemdNotifier, notify_address, status_line, watchdog_interval
from tests.server_process import PROJECT, ServerProcess

UNIT = PROJECT / "conf" / "orchestrator.service"
TIMEOUT = 15  # seconds any one thing may take to arrive
WATCHDOG_USEC = 200_000  # pings every 100 ms
# Whatever the environment running pytest has (it may itself run under systemd):
NO_WATCHDOG = {"WATCHDOG_USEC": "", "WATCHDOG_PID": ""}
NOT_NOTIFIED = {"NOTIFY_SOCKET": "", **NO_WATCHDOG}


# -- the test's end of the notify socket ------------------------------------------------------------


@dataclass
class Message:
    """One datagram: when it arrived, the sender's pid as the kernel vouches for it (what systemd's
    NotifyAccess= checks), and its KEY=value lines."""

    at: float
    pid: int
    fields: dict[str, str]

    def __contains__(self, key: str) -> bool:
        return key in self.fields


@dataclass
class NotifySocket:
    """A datagram socket bound where `$NOTIFY_SOCKET` says, receiving what the server sends."""

    address: str  # as written in NOTIFY_SOCKET: a path, or @name for the abstract namespace
    sock: socket.socket = field(init=False)
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:] if self.address.startswith("@") else self.address)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setblocking(False)

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address}

    def _receive(self, timeout: float) -> Message | None:
        if not select.select([self.sock], [], [], max(0.0, timeout))[0]:
            return None
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = -1
        for level, kind, value in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                pid = struct.unpack("iII", value[:12])[0]
        lines = data.decode().split("\n")
        message = Message(time.monotonic(), pid, dict(line.split("=", 1) for line in lines if line))
        self.messages.append(message)
        return message

    def wait_for(
        self, wanted: Callable[[Message], bool], timeout: float = TIMEOUT, start: int = 0
    ) -> Message:
        """The first message from index `start` on that is `wanted`, waiting up to `timeout` for it."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for message in self.messages[seen:]:
                if wanted(message):
                    return message
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing wanted arrived in {timeout} s; got {self.messages[start:]}")
            self._receive(remaining)

    def collect(self, seconds: float) -> list[Message]:
        """Everything that arrives in the next `seconds`."""
        start, deadline = len(self.messages), time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._receive(remaining)
        return self.messages[start:]

    def drain(self) -> list[Message]:
        """What is queued now, without waiting."""
        start = len(self.messages)
        while self._receive(0) is not None:
            pass
        return self.messages[start:]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    # A short directory of its own: a socket path may not exceed 107 bytes, which pytest's tmp_path can.
    with tempfile.TemporaryDirectory(prefix="notify-") as directory:
        listener = NotifySocket(str(Path(directory) / "notify"))
        yield listener
        listener.close()


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Every server a test starts is killed at its end, stopped or not."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.proc.pid, signal.SIGCONT)
        server.kill()


def start(
    servers: list[ServerProcess], *args: str, env: dict[str, str], db: Path | None = None
) -> ServerProcess:
    server = ServerProcess(*args, env=env, db=db)
    servers.append(server)
    return server


def is_ready(message: Message) -> bool:
    return message.fields.get("READY") == "1"


def has(key: str, value: str = "1") -> Callable[[Message], bool]:
    return lambda message: message.fields.get(key) == value


def status_is(text: str) -> Callable[[Message], bool]:
    return lambda message: message.fields.get("STATUS") == text


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s")
        time.sleep(0.01)


def clean_env() -> dict[str, str]:
    drop = ("ORCH_", "NOTIFY_SOCKET", "WATCHDOG_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@dataclass
class Watching:
    """A session running with its stream open. The line iterator is kept: once it is dropped,
    requests closes the connection, and the server counts one stream less."""

    session_id: str
    response: requests.Response
    lines: Iterator[bytes]

    def close(self) -> None:
        self.response.close()


def watch_a_run(server: ServerProcess, http: requests.Session) -> Watching:
    """Create and run a session, with its stream open and read up to its first step-start."""
    created = http.post(f"{server.url}/api/sessions", json={"topic": "tides"}, timeout=TIMEOUT)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    stream = requests.post(f"{server.url}/api/sessions/{session_id}/run", stream=True, timeout=TIMEOUT)
    lines = stream.iter_lines()
    read = []
    for line in lines:
        read.append(line)
        if b'"type":"step-start"' in line:
            return Watching(session_id, stream, lines)
    raise AssertionError(f"the stream ended before its first step: {read}\n{server.log_text()}")


# -- READY=1 ----------------------------------------------------------------------------------------


def test_ready_comes_once_the_port_is_served_from_the_main_process_with_mainpid_and_a_status(servers, notify):
    server = start(servers, env={**notify.env, **NO_WATCHDOG})
    ready = notify.wait_for(is_ready)
    assert ready.pid == server.proc.pid  # sent by the main process itself: NotifyAccess=main takes it
    assert ready.fields["MAINPID"] == str(server.proc.pid)
    assert ready.fields["STATUS"] == "0 running, 0 queued, 0 streams"
    answer = requests.get(f"{server.url}/ready", timeout=TIMEOUT)
    assert answer.status_code == 200 and answer.json()["status"] == "ready"
    # In the time a run takes to start and be cancelled: READY is not said again, and without
    # WATCHDOG_USEC there is no ping.
    http = requests.Session()
    run = watch_a_run(server, http)
    run.close()
    http.post(f"{server.url}/api/sessions/{run.session_id}/cancel", timeout=TIMEOUT)
    later = notify.drain()
    assert not any(is_ready(m) for m in later) and not any("WATCHDOG" in m for m in later)
    assert server.terminate() == 0


def test_ready_waits_until_the_runs_a_crash_interrupted_are_running_again(servers, notify, tmp_path):
    db = tmp_path / "orchestrator.db"
    first = start(servers, "--pace=40", env=NOT_NOTIFIED, db=db)
    run = watch_a_run(first, requests.Session())
    first.kill()  # SIGKILL mid-run: the session is left running in the file
    run.close()

    second = start(servers, "--pace=40", env={**notify.env, **NO_WATCHDOG}, db=db)
    ready = notify.wait_for(is_ready)
    # Computed as READY=1 was sent: the resumed run was already under way.
    assert ready.fields["STATUS"].startswith("1 running, "), ready.fields
    session = requests.get(f"{second.url}/api/sessions/{run.session_id}", timeout=TIMEOUT).json()
    assert session["status"] == "running"
    assert "resumed 1 sessions" in second.log_text()


def test_a_start_that_cannot_listen_never_says_ready(notify):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "server.py", f"--port={port}", "--store=memory"],
            cwd=PROJECT,
            env={**clean_env(), **notify.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1 and "cannot listen" in done.stderr
    assert notify.drain() == []  # it has exited: whatever it sent would be queued by now


# -- STATUS= ----------------------------------------------------------------------------------------


def test_the_status_line_follows_runs_queue_and_streams_and_ready_says_when_the_queue_is_full(
    servers, notify
):
    args = ("--pace=40", "--max_running=1", "--max_queued=1")
    server = start(servers, *args, env={**notify.env, **NO_WATCHDOG})
    notify.wait_for(is_ready)
    http = requests.Session()
    run = watch_a_run(server, http)
    notify.wait_for(status_is("1 running, 0 queued, 1 stream"))  # refreshed every 2 s
    assert http.get(f"{server.url}/ready", timeout=TIMEOUT).status_code == 200  # one more may wait

    waiting = http.post(f"{server.url}/api/sessions", json={"topic": "waves"}, timeout=TIMEOUT).json()["id"]
    started = http.post(f"{server.url}/api/sessions/{waiting}/start", timeout=TIMEOUT)
    assert started.status_code == 202 and started.json()["status"] == "queued"
    notify.wait_for(status_is("1 running, 1 queued, 1 stream"))
    full = http.get(f"{server.url}/ready", timeout=TIMEOUT)
    assert full.status_code == 503
    assert full.json()["error"] == "not ready: 1 sessions wait for a run slot, the most it takes"

    mark = len(notify.messages)
    for session_id in (waiting, run.session_id):
        assert http.post(f"{server.url}/api/sessions/{session_id}/cancel", timeout=TIMEOUT).status_code == 200
    run.close()
    notify.wait_for(status_is("0 running, 0 queued, 0 streams"), start=mark)
    assert http.get(f"{server.url}/ready", timeout=TIMEOUT).status_code == 200
    # Sent when the text changed, not at every refresh.
    statuses = [m.fields["STATUS"] for m in notify.messages if "STATUS" in m]
    assert all(a != b for a, b in itertools.pairwise(statuses)), statuses


# -- WATCHDOG=1 -------------------------------------------------------------------------------------


def test_watchdog_pings_come_every_half_period_and_stop_while_the_loop_cannot_run(servers, tmp_path):
    # The abstract namespace (@name), as systemd may hand out, on the way.
    notify = NotifySocket(f"@orchestrator-test-{uuid.uuid4().hex}")
    try:
        env = {**notify.env, "WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": ""}
        server = start(servers, env=env, db=tmp_path / "orchestrator.db")
        notify.wait_for(is_ready)
        notify.wait_for(has("WATCHDOG"))
        window = 3.0
        pings = [m for m in notify.collect(window) if "WATCHDOG" in m]
        expected = window / (WATCHDOG_USEC / 2 / 1e6)  # 30
        assert expected / 3 <= len(pings) <= expected * 2, len(pings)
        assert all(m.pid == server.proc.pid for m in pings)

        # SIGSTOP: the loop cannot run, as when it is wedged. Once the process is stopped, everything
        # it sent is queued; drain that, and nothing more may come while it stays stopped.
        os.kill(server.proc.pid, signal.SIGSTOP)
        wait_until(lambda: stopped(server.proc.pid), "SIGSTOP")
        notify.drain()
        assert notify.collect(1.0) == []
        os.kill(server.proc.pid, signal.SIGCONT)
        resumed = notify.wait_for(has("WATCHDOG"), start=len(notify.messages))
        assert resumed.pid == server.proc.pid

        # Closer to a wedged loop: only the main thread, which runs the loop, is held; the store's
        # threads run on. The pings stop all the same: they come from the loop, not from a thread.
        with loop_thread_held(server.proc.pid) as others:
            assert others, "the SQLite store has threads of its own"
            notify.drain()
            assert notify.collect(1.0) == []
            assert not any(thread_state(server.proc.pid, tid) in "tT" for tid in others)
        notify.wait_for(has("WATCHDOG"), start=len(notify.messages))
        assert server.terminate() == 0
    finally:
        notify.close()


PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000  # __WALL: wait for a thread, not only a process


def thread_state(pid: int, tid: int) -> str:
    with open(f"/proc/{pid}/task/{tid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


@contextlib.contextmanager
def loop_thread_held(pid: int) -> Iterator[list[int]]:
    """Hold only the process's main thread in a ptrace stop (PTRACE_SEIZE attaches to one thread);
    yield the ids of its other threads, which keep running."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
        pytest.skip(f"this test may not ptrace its child: {os.strerror(ctypes.get_errno())}")
    try:
        assert libc.ptrace(PTRACE_INTERRUPT, pid, None, None) == 0, os.strerror(ctypes.get_errno())
        _, status = os.waitpid(pid, WALL)  # returns once the thread is in its stop
        assert os.WIFSTOPPED(status) and thread_state(pid, pid) == "t"
        yield [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]
    finally:
        libc.ptrace(PTRACE_DETACH, pid, None, None)


# -- STOPPING=1 and the drain -----------------------------------------------------------------------


def test_sigterm_says_stopping_ready_turns_503_and_pings_go_on_through_the_drain(servers, notify):
    timeout = 2  # shutdown_timeout: the run outlasts it, so the drain takes all of it
    env = {**notify.env, "WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": ""}
    server = start(servers, "--pace=40", f"--shutdown_timeout={timeout}", env=env)
    notify.wait_for(is_ready)
    http = requests.Session()  # its connection stays open (keep-alive) once the port stops accepting
    assert http.get(f"{server.url}/ready", timeout=TIMEOUT).status_code == 200
    run = watch_a_run(server, http)

    server.proc.send_signal(signal.SIGTERM)
    stopping = notify.wait_for(has("STOPPING"))
    assert stopping.fields["STATUS"].startswith("draining: 1 running"), stopping.fields
    answer = http.get(f"{server.url}/ready", timeout=TIMEOUT)
    body = answer.json()
    assert answer.status_code == 503 and body["status"] == 503 and set(body) == {"error", "status"}
    assert "shutting down" in body["error"]
    # The drain lasts `timeout` s with a session running; the watchdog must not fire meanwhile.
    notify.wait_for(has("WATCHDOG"), start=notify.messages.index(stopping) + 1)
    run.close()
    assert server.proc.wait(TIMEOUT + timeout) == 0
    assert not any(is_ready(m) for m in notify.drain())


# -- /ready -----------------------------------------------------------------------------------------


def test_ready_needs_no_key_and_is_not_rate_limited(servers):
    env = {"ORCH_API_KEYS": "tester:secret-key-1", **NOT_NOTIFIED}
    server = start(servers, "--rate_limit=2/second", env=env)
    assert requests.get(f"{server.url}/api/sessions", timeout=TIMEOUT).status_code == 401
    answers = [requests.get(f"{server.url}/ready", timeout=TIMEOUT) for _ in range(10)]
    assert [a.status_code for a in answers] == [200] * 10
    body = answers[0].json()
    assert body["status"] == "ready" and set(body) == {"status", "timestamp"}
    assert "RateLimit" not in answers[0].headers


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Root ignores permissions, so as root the file is made immutable (chattr +i), which access()
    and writes honour even for root; otherwise it is chmod 444."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i cannot make {path} immutable here: {done.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(mode)


def test_ready_is_503_while_the_store_cannot_be_written_and_200_again_after(servers, tmp_path):
    db = tmp_path / "orchestrator.db"
    server = start(servers, env=NOT_NOTIFIED, db=db)
    assert requests.get(f"{server.url}/ready", timeout=TIMEOUT).status_code == 200
    with unwritable(db):
        answer = requests.get(f"{server.url}/ready", timeout=TIMEOUT)
        assert answer.status_code == 503
        assert answer.json() == {"error": "not ready: the session store cannot be written", "status": 503}
        assert str(tmp_path) not in answer.text
        assert requests.get(f"{server.url}/health", timeout=TIMEOUT).status_code == 200  # alive, all the same
    assert requests.get(f"{server.url}/ready", timeout=TIMEOUT).status_code == 200


# -- the notifier on its own ------------------------------------------------------------------------


def test_the_environment_is_read_as_sd_notify_reads_it():
    assert notify_address({}) is None
    assert notify_address({"NOTIFY_SOCKET": ""}) is None
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({"NOTIFY_SOCKET": "@abstract/name"}) == "\0abstract/name"
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, 42) is None  # not us
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None


def test_without_notify_socket_nothing_happens():
    notifier = SystemdNotifier.from_environment(lambda: "x", {"WATCHDOG_USEC": "200000"})
    assert not notifier.enabled and notifier.watchdog is None
    notifier.ready()
    notifier.stopping()
    assert notifier.send("READY=1") is False
    notifier.close()


class _Figures:
    def __init__(self, running: int, queued: int, streams: int) -> None:
        self.running_count, self.queue_length = running, queued
        self.log = type("Log", (), {"subscriber_count": streams})()


def test_the_status_line_reads_the_engines_figures():
    assert status_line(_Figures(3, 2, 41)) == "3 running, 2 queued, 41 streams"
    assert status_line(_Figures(1, 0, 1)) == "1 running, 0 queued, 1 stream"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_send_never_blocks_and_never_raises_when_systemd_does_not_read(notify):
    """A notify socket nobody reads fills up; a blocking send would then wedge the loop (and so kill
    the service by watchdog). Sends are dropped instead."""
    records = _Records()
    logging.getLogger("orchestrator.systemd").addHandler(records)
    notifier = SystemdNotifier(notify.address, lambda: "")
    results: list[bool] = []
    sender = threading.Thread(target=lambda: results.extend(notifier.send("WATCHDOG=1") for _ in range(5000)))
    sender.start()
    sender.join(TIMEOUT)
    assert not sender.is_alive(), "a send blocked"
    assert results[0] is True and results[-1] is False  # the queue filled, and what followed was dropped
    notify.close()
    os.unlink(notify.address)  # systemd is gone: the failure is logged once, not once a ping
    assert notifier.send("WATCHDOG=1") is False and notifier.send("WATCHDOG=1") is False
    logging.getLogger("orchestrator.systemd").removeHandler(records)
    assert len([m for m in records.messages if "cannot notify systemd" in m]) == 1
    notifier.close()


# -- conf/orchestrator.service ----------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Section.Key` → its values in order (a key may be given more than once)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, value = line.split("=", 1)
        entries.setdefault(f"{section}.{key}", []).append(value)
    return entries


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_the_unit_agrees_with_the_service():
    unit = unit_settings(UNIT.read_text())
    service = {key.removeprefix("Service."): values for key, values in unit.items()}
    one = {key: values[-1] for key, values in service.items()}
    defaults = settings_for_tests()
    assert (one["Type"], one["NotifyAccess"]) == ("notify", "main")
    assert seconds(one["WatchdogSec"]) >= 10  # a ping every WatchdogSec/2; a busy second must not trip it
    # The drain (shutdown_timeout), the streams' last bytes (5 s), and a margin before SIGKILL.
    assert seconds(one["TimeoutStopSec"]) >= defaults.shutdown_timeout + 5 + 10
    assert one["Restart"] == "on-failure"
    assert int(one["LimitNOFILE"]) >= defaults.max_connections + FD_RESERVE
    # The notify socket is AF_UNIX: a unit without it could never say READY=1.
    assert "AF_UNIX" in one["RestrictAddressFamilies"].split()
    # ProtectSystem=strict leaves only the state directory writable: the database must be there.
    environment = dict(line.split("=", 1) for line in service["Environment"])
    assert one["ProtectSystem"] == "strict" and one["StateDirectory"] == "orchestrator"
    database = settings_for_tests(db_path=environment["ORCH_DB_PATH"]).database
    assert database.parent == Path("/var/lib/orchestrator")
    assert one["ExecStart"].split()[0] == f"{one['WorkingDirectory']}/.venv/bin/python"


def test_systemd_analyze_verifies_the_unit_and_rates_its_hardening(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing: `make test` installs Debian's systemd as root")
    # verify checks that ExecStart= exists: point it at this checkout's interpreter.
    copy = tmp_path / "orchestrator.service"
    copy.write_text(UNIT.read_text().replace("/opt/orchestrator/.venv/bin/python", sys.executable))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    # Unknown keys and unparsable values are only warnings (exit 0): any line about the unit fails.
    about_it = [line for line in (done.stdout + done.stderr).splitlines() if "orchestrator" in line]
    assert done.returncode == 0 and about_it == [], done.stdout + done.stderr
    rated = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", rated.stdout)
    if exposure is None:
        pytest.skip(f"this systemd-analyze cannot rate a unit offline: {rated.stderr.strip()[:200]}")
    assert float(exposure.group(1)) <= 2.5, rated.stdout  # 1.7 as written; 9.6 would be no hardening
