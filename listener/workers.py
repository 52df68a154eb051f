"""Several worker processes on one port: the parent reserves it, forks the workers, passes signals on
and starts a worker again if one dies; each worker listens on the port with a socket of its own
(SO_REUSEPORT), so the kernel spreads new connections evenly over them, and runs the whole service.

Used only with a store the workers can share (Redis): every session then lives in the store, so it
does not matter which worker a client's connection lands on.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

log = logging.getLogger("orchestrator")

RESTART_DELAY = 1.0  # seconds before a worker that died is started again
STARTUP = 5.0  # a worker that fails sooner failed to start (settings, store): restarts will not help
PR_SET_PDEATHSIG = 1  # prctl(2)
MAX_RESTARTS = 100  # in the parent's life: beyond that something is wrong that restarts do not fix


def supervise(workers: int, worker: Callable[[int], int]) -> int:
    """Fork `workers` processes that each return `worker(index)` as their exit status; in the parent,
    forward SIGTERM/SIGINT to them, restart one that dies unexpectedly, and return once all have
    stopped after a signal (0 if they all stopped cleanly)."""
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, when it started)
    stopping = False
    restarts = 0

    parent = os.getpid()

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                stop_with_parent(parent)
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


def stop_with_parent(parent: int) -> None:
    """In a worker: be sent SIGTERM when the parent dies, however it dies (kill -9 included), so no
    worker goes on serving the port unsupervised. Linux only (prctl PR_SET_PDEATHSIG); elsewhere,
    workers outlive a parent killed without warning."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def reserve_port(host: str, port: int) -> tuple[list[socket.socket], int]:
    """Bind (without listening) every address of `host` on `port` with SO_REUSEPORT: the port, if it
    was 0, and the sockets that hold it for the workers, which listen on it with their own sockets.
    A socket that does not listen is given no connections, so the parent takes none of their share.
    """
    held: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
        for family, kind, proto, _name, address in sorted(set(infos), key=lambda info: info[0]):
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0:  # the first address picked the port; the others take the same one
                sock.bind(address)
                port = sock.getsockname()[1]
            else:
                sock.bind((address[0], port, *address[2:]))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held, port
