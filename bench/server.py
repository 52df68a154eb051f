"""Starts server.py as a child process for a benchmark, on a free port, with its log in a file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://[^:]+:(\d+)")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 40.0


# One client drives all the load here: per-client rate limits and caps would only measure themselves.
UNLIMITED = ("--rate_limit=", "--create_rate_limit=", "--max_pending_per_client=1000000")


class BenchServer:
    """server.py at pace 0 on the memory store, or on SQLite at `db`; it logs to `log`."""

    def __init__(self, log: Path, db: Path | None = None) -> None:
        # The figures are for the defaults, so settings left in this shell's environment stay out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        store = ["--store=sqlite", f"--db_path={db}"] if db else ["--store=memory"]
        self.log = log
        # A file, not a pipe: nothing has to keep reading the log while the benchmark runs.
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "server.py",
                    "--port=0",
                    "--pace=0",
                    "--log_format=text",
                    *UNLIMITED,
                    *store,
                ],
                cwd=PROJECT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        self.url = f"http://127.0.0.1:{self._wait_for_port()}"

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            match = LISTENING.search(self.log.read_text(errors="replace"))
            if match:
                return int(match.group(1))
            time.sleep(0.05)
        self.terminate()
        raise RuntimeError(f"server.py did not start; its log:\n{self.log.read_text(errors='replace')}")

    def terminate(self) -> int:
        """Stop it as an operator would (SIGTERM) and wait for it to exit; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(STOP_TIMEOUT)
