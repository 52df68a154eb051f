"""Accepting connections without spinning when the process runs out of file descriptors."""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from tornado.ioloop import IOLoop

log = logging.getLogger("orchestrator.listener")

# Errors that mean "no descriptor (or kernel memory) for a new socket right now". The pending
# connection stays queued, so the listening socket stays readable: retrying at once would spin.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Same heuristic as tornado.netutil.add_accept_handler: accept at most a backlog's worth of
# connections per wake-up so a flood of connects cannot starve everything else on the loop.
ACCEPTS_PER_WAKEUP = 128


class LogThrottle:
    """Logs a recurring condition at most once per `interval` seconds, with the number of
    occurrences that were not logged since the last line."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 5.0,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.level = level
        self.clock = clock
        self.suppressed = 0
        self._last: float | None = None

    def __call__(self, message: str, *args: Any) -> bool:
        """Log `message % args` unless a line was logged less than `interval` ago; True if logged."""
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return False
        self._last = now
        suppressed, self.suppressed = self.suppressed, 0
        self.logger.log(self.level, message + " (%d more suppressed)", *args, suppressed)
        return True


class BackoffAcceptor:
    """Accepts connections on a listening socket and hands them to `callback`; when accept fails
    for lack of descriptors it stops watching the socket for a back-off (doubling from
    `min_pause` to `max_pause`) instead of retrying, and logs through a throttle."""

    def __init__(
        self,
        sock: socket.socket,
        callback: Callable[[socket.socket, Any], None],
        *,
        min_pause: float = 0.1,
        max_pause: float = 1.0,
        throttle: LogThrottle | None = None,
    ) -> None:
        self.sock = sock
        self.callback = callback
        self.min_pause = min_pause
        self.max_pause = max_pause
        self.pause = min_pause
        self.throttle = throttle or LogThrottle(log)
        self.failures = 0  # accepts that failed for lack of resources, for tests and metrics
        self.io_loop = IOLoop.current()
        self._watching = False
        self._removed = False
        self._resume: object | None = None

    def start(self) -> None:
        self._watch()

    def remove(self) -> None:
        """Stop accepting for good (the server is stopping); the caller closes the socket."""
        self._removed = True
        if self._resume is not None:
            self.io_loop.remove_timeout(self._resume)
            self._resume = None
        self._unwatch()

    def _watch(self) -> None:
        if not self._watching and not self._removed:
            self.io_loop.add_handler(self.sock, self._on_readable, IOLoop.READ)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            self.io_loop.remove_handler(self.sock)
            self._watching = False

    def _on_readable(self, fd: Any, events: int) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            if self._removed:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                # The peer gave up while queued; nothing to hand on.
                continue
            except OSError as exc:
                self._back_off(exc)
                return
            # A successful accept ends a run of failures: the next one starts from a short pause.
            self.pause = self.min_pause
            self.callback(connection, address)

    def _back_off(self, exc: OSError) -> None:
        # Only running out of descriptors or memory is expected here; any other error from
        # accept is just as likely to repeat at once, so it gets the same pause rather than a spin.
        self.failures += 1
        kind = "out of file descriptors" if exc.errno in EXHAUSTED else "accept failed"
        self.throttle(
            "%s (%s); not accepting for %.2g s at a time until it clears",
            kind,
            exc.strerror or exc,
            self.pause,
        )
        self._unwatch()
        self._resume = self.io_loop.call_later(self.pause, self._resume_accepting)
        self.pause = min(self.pause * 2, self.max_pause)

    def _resume_accepting(self) -> None:
        self._resume = None
        self._watch()


def add_backoff_accept_handler(
    sock: socket.socket, callback: Callable[[socket.socket, Any], None], **options: Any
) -> Callable[[], None]:
    """Like tornado.netutil.add_accept_handler, but backs off instead of spinning on EMFILE and
    similar errors. Returns the callable that stops accepting."""
    acceptor = BackoffAcceptor(sock, callback, **options)
    acceptor.start()
    return acceptor.remove
