"""Tells systemd how the service is doing (Type=notify): ready, a status line, watchdog pings, stopping.

The protocol is sd_notify(3)'s: newline-separated `KEY=value` lines in one datagram to the AF_UNIX
socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`). Without
`$NOTIFY_SOCKET` (not started by systemd, or not as Type=notify) nothing here does anything.

The watchdog pings come from the event loop itself, every `$WATCHDOG_USEC / 2`: a loop that is wedged
stops pinging, and systemd kills and restarts the service once `WatchdogSec=` passes without one.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Protocol

from tornado.ioloop import PeriodicCallback

log = logging.getLogger("orchestrator.systemd")

STATUS_INTERVAL = 2.0  # seconds between looks at the figures; STATUS= is sent when its text changed


class _Streams(Protocol):
    @property
    def subscriber_count(self) -> int: ...


class Figures(Protocol):
    """What the status line reads (the Engine has all three)."""

    @property
    def running_count(self) -> int: ...

    @property
    def queue_length(self) -> int: ...

    @property
    def log(self) -> _Streams: ...


def status_line(engine: Figures) -> str:
    """What `systemctl status` shows: "3 running, 2 queued, 41 streams"."""
    streams = engine.log.subscriber_count
    plural = "" if streams == 1 else "s"
    return f"{engine.running_count} running, {engine.queue_length} queued, {streams} stream{plural}"


def notify_address(environ: Mapping[str, str]) -> str | None:
    """`$NOTIFY_SOCKET` as an AF_UNIX address (`@name` is the abstract `\\0name`); None if unset or
    of a kind this does not speak (systemd 254+ can hand a VM a `vsock:` address)."""
    value = environ.get("NOTIFY_SOCKET", "")
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        log.warning("NOTIFY_SOCKET=%s is not a unix socket; not notifying systemd", value)
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of `$WATCHDOG_USEC`, if it is set and `$WATCHDOG_PID`
    is unset or this process (it names whom systemd watches); None for no pings."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
        watched = int(environ.get("WATCHDOG_PID") or pid)
    except ValueError:
        return None
    if usec <= 0 or watched != pid:
        return None
    return usec / 2 / 1_000_000


class SystemdNotifier:
    """The service's side of the notify socket. `ready()` once serving, `stopping()` when the drain
    starts, `close()` at the very end; in between it keeps STATUS= current and, if asked for, pings
    the watchdog. A send never blocks the loop and never raises: a datagram systemd has no room for is
    dropped (the next ping comes half a watchdog period later), a failure is logged once."""

    def __init__(
        self,
        address: str | None,
        status: Callable[[], str],
        watchdog: float | None = None,
    ) -> None:
        self.address = address
        self.watchdog = watchdog if address else None
        self._status = status
        self._draining = False
        self._last_status = ""
        self._failed: set[int | None] = set()
        self._timers: list[PeriodicCallback] = []
        self._socket: socket.socket | None = None
        if address is not None:
            try:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            except OSError as exc:
                log.warning("cannot open a socket to tell systemd how the service is: %s", exc)

    @classmethod
    def from_environment(
        cls, status: Callable[[], str], environ: Mapping[str, str] | None = None
    ) -> SystemdNotifier:
        environ = os.environ if environ is None else environ
        return cls(notify_address(environ), status, watchdog_interval(environ, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *lines: str) -> bool:
        """One datagram of `KEY=value` lines; whether it was sent."""
        if self._socket is None or self.address is None:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode("utf-8", "replace"), self.address)
        except BlockingIOError:
            log.debug("systemd's notify queue is full; dropped %s", lines[0])
            return False
        except OSError as exc:
            if exc.errno not in self._failed:  # once per kind of failure, not every ping
                self._failed.add(exc.errno)
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), exc)
            return False
        return True

    def status_text(self) -> str:
        text = self._status()
        return f"draining: {text}" if self._draining else text

    def ready(self) -> None:
        """The port is served and resumed runs are under way: READY=1, then keep systemd told."""
        if not self.enabled:
            return
        self._last_status = self.status_text()
        self.send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={self._last_status}")
        self._timers.append(PeriodicCallback(self._refresh_status, STATUS_INTERVAL * 1000))
        if self.watchdog is not None:
            self._timers.append(PeriodicCallback(self._ping, self.watchdog * 1000))
        for timer in self._timers:
            timer.start()

    def stopping(self) -> None:
        """The drain has started. The watchdog pings go on: a drain may outlast WatchdogSec."""
        self._draining = True
        if self.enabled:
            self._last_status = self.status_text()
            self.send("STOPPING=1", f"STATUS={self._last_status}")

    def close(self) -> None:
        for timer in self._timers:
            timer.stop()
        self._timers.clear()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _refresh_status(self) -> None:
        text = self.status_text()
        if text != self._last_status and self.send(f"STATUS={text}"):
            self._last_status = text

    def _ping(self) -> None:
        self.send("WATCHDOG=1")


def notify_ready(engine: Figures) -> SystemdNotifier:
    """Tell systemd (if it is listening) that the service is ready, with the engine's figures as its
    status from now on; the notifier returned is told of the drain and closed by the caller."""
    notifier = SystemdNotifier.from_environment(lambda: status_line(engine))
    notifier.ready()
    return notifier
