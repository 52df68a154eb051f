"""Smaller per-connection state for connections that stay open for hours (event streams).

An idle stream is mostly Tornado's per-connection objects, and by the ten thousand they add up.
Two of them are far larger than what they hold: the IOStream's two write queues are deques, and an
empty deque carries a block of 64 slots (about 760 bytes each). On a stream that keeps up they hold
one or two entries for a moment, then nothing. Each is swapped for a list that offers the few deque
methods Tornado calls on it. The connection's set of trusted downstream proxies (only read when
`xheaders` is on) is replaced by one frozen set shared by all connections.

These are private attributes of the pinned Tornado: each swap is made only where the attribute is
found with the type it had, so a Tornado that changed them is left as it is (and
tests/test_long_lived.py says so).
"""

from __future__ import annotations

import collections
from typing import Any, TypeVar

from tornado.iostream import IOStream

T = TypeVar("T")


class ShortQueue(list[T]):
    """A deque's interface as IOStream uses it (append, popleft, [0], [-1], clear, len, iteration)
    on a list. popleft moves what is left, which for the one or two entries a stream's queue holds
    costs less than a deque's block; an empty one is 56 bytes, not 760."""

    __slots__ = ()

    def popleft(self) -> T:
        return self.pop(0)


NOTHING_TRUSTED: frozenset[str] = frozenset()


def _shrink_queue(owner: Any, name: str) -> bool:
    queue = getattr(owner, name, None)
    if type(queue) is not collections.deque:
        return isinstance(queue, ShortQueue)
    setattr(owner, name, ShortQueue(queue))
    return True


def slim_connection(stream: IOStream, context: Any) -> bool:
    """Swap a long-lived connection's write queues for lists and share its trusted-proxy set.
    Safe at any point of the connection's life, queued writes included (their order is kept). True
    if both queues are lists afterwards."""
    shrunk = _shrink_queue(getattr(stream, "_write_buffer", None), "_buffers")
    shrunk = _shrink_queue(stream, "_write_futures") and shrunk
    trusted = getattr(context, "trusted_downstream", None)
    if type(trusted) is set:
        context.trusted_downstream = frozenset(trusted) if trusted else NOTHING_TRUSTED
    return shrunk
