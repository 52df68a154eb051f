"""Several worker processes on one port: the parent binds it, forks the workers, passes signals on and
starts a worker again if one dies; each worker runs the whole service on the shared socket.

Used only with a store the workers can share (Redis): every session then lives in the store, so it
does not matter which worker a client's connection lands on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

log = logging.getLogger("orchestrator")

RESTART_DELAY = 1.0  # seconds before a worker that died is started again
STARTUP = 5.0  # a worker that fails sooner failed to start (settings, store): restarts will not help
MAX_RESTARTS = 100  # in the parent's life: beyond that something is wrong that restarts do not fix


def supervise(workers: int, worker: Callable[[int], int]) -> int:
    """Fork `workers` processes that each return `worker(index)` as their exit status; in the parent,
    forward SIGTERM/SIGINT to them, restart one that dies unexpectedly, and return once all have
    stopped after a signal (0 if they all stopped cleanly)."""
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, when it started)
    stopping = False
    restarts = 0

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = worker(index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = (index, time.monotonic())

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(workers):
        start(index)
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index, started = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            exit_code = exit_code or (code if code > 0 else 1 if code else 0)
            continue
        if code > 0 and time.monotonic() - started < STARTUP:
            log.error("worker %d could not start (exit status %d); stopping the others", index, code)
            forward(signal.SIGTERM, None)
            exit_code = code
            continue
        if restarts >= MAX_RESTARTS:
            log.error("worker %d exited (%d); %d restarts already, stopping", index, code, restarts)
            forward(signal.SIGTERM, None)
            exit_code = 1
            continue
        restarts += 1
        log.error("worker %d (pid %d) exited with %d; starting it again", index, pid, code)
        time.sleep(RESTART_DELAY)
        start(index)
    return exit_code
