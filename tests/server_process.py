"""Runs `server.py` as a real child process on a free port, for tests of signals, logs and clients."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://[^:]+:(\d+)")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def limit_open_files(limit: int) -> None:
    """In the child, before it runs: soft and hard open-file limits alike (the server raises soft)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


class ServerProcess:
    def __init__(
        self,
        *args: str,
        db: Path | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 20,
        command: list[str] | None = None,
        fd_limit: int | None = None,
    ) -> None:
        """Start the server; with `db` on that SQLite file, otherwise on the memory store.

        `command` runs other Python arguments instead (a script that logs `listening on` too);
        `fd_limit` starts the child under that open-file limit.
        """
        self.lines: list[str] = []
        self.port = 0
        self._ready = threading.Event()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        child_env.update(env or {})
        store = ["--store=sqlite", f"--db_path={db}"] if db else ["--store=memory"]
        argv = command or ["server.py", "--port=0", "--pace=0", "--log_format=text", *store, *args]
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=PROJECT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=None if fd_limit is None else lambda: limit_open_files(fd_limit),
            start_new_session=True,  # a group of its own: kill() reaches any worker it forked too
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._ready.wait(start_timeout):
            self.kill()
            raise AssertionError("server did not start:\n" + "".join(self.lines))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(1))
                self._ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return "".join(self.lines)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far (fields 14 and 15 of its stat)."""
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def wait_for_log(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in the log:\n{self.log_text()}")
            time.sleep(0.02)

    def terminate(self, timeout: float = 40) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close_log()
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        # Once every process holding its stderr has exited, it reaches EOF and the reader ends. A
        # pipe still being read is left open: closing it would wait for the reader, for ever.
        self._reader.join(10)
        if self.proc.stderr is not None and not self._reader.is_alive():
            self.proc.stderr.close()
