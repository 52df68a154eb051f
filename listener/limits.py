"""Open-file limits: raise the soft limit at start and size the connection cap to stay below it."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("orchestrator.listener")

# File descriptors kept back from connections: the SQLite database and its journal, log files,
# outgoing HTTP connections to the model provider, the event loop's own, and some slack. If
# connections could use every descriptor, the first thing to fail would be one of those.
FD_RESERVE = 64


def open_file_limit() -> int:
    """The soft RLIMIT_NOFILE now in force (RLIM_INFINITY if unlimited)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force.

    The soft limit is often 1024 (systemd and most shells), far below what a server holding
    thousands of streams needs, while the hard limit an unprivileged process may raise it to is
    usually much higher. A limit that cannot be raised is left as it is.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an infinite soft limit for descriptors (it is bounded by fs.nr_open), so an
    # infinite hard limit is not something to copy; keep what we have.
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open file limit from %d to %d: %s", soft, hard, exc)
    return open_file_limit()


def connection_cap(max_connections: int, fd_limit: int | None = None, reserve: int = FD_RESERVE) -> int:
    """The number of connections to hold at once: the setting, lowered to leave `reserve`
    descriptors free under `fd_limit` (by default the soft limit now in force).

    With a small limit the reserve would eat everything, so at least half the limit is always
    left to connections.
    """
    limit = open_file_limit() if fd_limit is None else fd_limit
    if limit == resource.RLIM_INFINITY or limit < 0:
        return max_connections
    return max(1, min(max_connections, max(limit - reserve, limit // 2)))
