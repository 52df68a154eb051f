"""Starts server.py, or another server a benchmark needs, as a child process on a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://[^:]+:(\d+)")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 40.0


# One client drives all the load here: per-client rate limits and caps would only measure themselves.
UNLIMITED = ("--rate_limit=", "--create_rate_limit=", "--max_pending_per_client=1000000")


class ChildServer:
    """The command `argv`, run from the project; it must log `listening on http://HOST:PORT` to
    stderr, which goes to `log`, `listeners` times before it serves (once per worker)."""

    def __init__(
        self, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None, listeners: int = 1
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self.listeners = listeners
        # A file, not a pipe: nothing has to keep reading the log while the benchmark runs.
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=PROJECT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        self.port = self._wait_for_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            # Workers each say so once they serve; the port is the one their parent bound for all.
            ports = LISTENING.findall(self.log.read_text(errors="replace"))
            if len(ports) >= self.listeners:
                return int(ports[0])
            time.sleep(0.05)
        self.terminate()
        command = " ".join(self.argv[1:3])
        raise RuntimeError(f"{command} did not start; its log:\n{self.log.read_text(errors='replace')}")

    def terminate(self) -> int:
        """Stop it as an operator would (SIGTERM; a parent passes it on to its workers) and wait for it
        to exit; its exit status. Past the deadline it is killed, and that is an error."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise RuntimeError(
                f"{' '.join(self.argv[1:3])} did not stop within {STOP_TIMEOUT:g} s of SIGTERM"
            ) from None


class BenchServer(ChildServer):
    """server.py at pace 0 on the memory store, or on SQLite at `db`; it logs to `log`. Options in
    `extra` come last, so they win over these (`--pace=600`)."""

    def __init__(self, log: Path, db: Path | None = None, extra: Sequence[str] = ()) -> None:
        # The figures are for the defaults, so settings left in this shell's environment stay out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        store = ["--store=sqlite", f"--db_path={db}"] if db else ["--store=memory"]
        command = [sys.executable, "server.py", "--port=0", "--pace=0", "--log_format=text"]
        super().__init__([*command, *UNLIMITED, *store, *extra], log, env)
