"""A real `redis-server` for the tests and benchmarks: on a free loopback port, in a directory of its
own, started, stopped, killed and started again on the same port (for outage tests).

Debian's package (`make test` installs it as root) puts it in /usr/bin; without it, whatever asks
for one is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

CANDIDATES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return next((path for path in CANDIDATES if os.access(path, os.X_OK)), None)


def require_redis_server() -> str:
    """The redis-server executable, or skip the test saying how to get one."""
    executable = find_redis_server()
    if executable is None:
        pytest.skip(
            "redis-server is not installed (Debian: apt-get install redis-server; `make test` does it as "
            "root), so the tests on the Redis store are skipped"
        )
    return executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis answers PING on the port (a raw socket: no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process. `aof=True` makes it write every command to its append-only file
    before answering (appendfsync always), so a write it acknowledged survives `kill()` and
    `restart()`; by default it keeps nothing on disk, and a restart starts empty."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        aof: bool = False,
        executable: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.executable = executable or require_redis_server()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.aof = aof
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        persistence = ["--appendonly", "no"]
        if self.aof:
            persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        return [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            *persistence,
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
            *self.extra,
        ]

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start it and wait until it answers PING; RuntimeError with its log if it does not."""
        if self.running:
            return self
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                self.process = None
                raise RuntimeError(f"redis-server on port {self.port} exited at start: {stderr}{self.log()}")
            if ping(self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} gave no PONG in {timeout} s: {self.log()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (it saves what its settings say, then exits), waiting for it; SIGKILL past `timeout`."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: gone at once, like a crash."""
        self._signal(signal.SIGKILL, 10.0)

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing is answered (a hung server, a network stall)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Stop it and start it again on the same port (and directory)."""
        self.stop()
        return self.start(timeout)

    def _signal(self, signum: int, timeout: float) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
            process.send_signal(signal.SIGCONT)  # a paused one must run to act on SIGTERM
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stderr is not None:
            process.stderr.close()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return "\n" + self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
