"""The latest events of recently active sessions, kept in memory, so a replay need not read the store."""

from __future__ import annotations

from collections import OrderedDict

from core.events import Event

# What one kept event costs besides its frame: the bytes object's header and two list slots.
EVENT_OVERHEAD = 56


class Tail:
    """One session's events from `first_id` on, every id present and in order.

    Kept as their types and frames, not as Event objects: strings and bytes are not tracked by the
    garbage collector, an Event is. The tens of thousands of events a full cache holds made every
    full collection, and the young ones after a busy spell, walk them all (70 ms pauses under load,
    which every stream and request of the process waited out). A replay makes its Events anew.
    """

    __slots__ = ("first_id", "frames", "size", "types")

    def __init__(self, first: Event) -> None:
        assert first.id is not None
        self.first_id = first.id
        self.types = [first.type]
        self.frames = [first.frame]
        self.size = len(first.frame) + EVENT_OVERHEAD

    @property
    def last_id(self) -> int:
        return self.first_id + len(self.frames) - 1

    def after(self, session_id: str, after_id: int) -> list[Event]:
        start = max(0, after_id - self.first_id + 1)
        first, types, frames = self.first_id, self.types, self.frames
        return [Event(first + i, types[i], session_id, frames[i]) for i in range(start, len(frames))]


class RecentEvents:
    """Each session's committed events, in order, up to `max_bytes` in all: the sessions touched
    longest ago go first.

    It must be told of every event as it is committed (the event log of the only process that
    writes them does so), and of sessions deleted. It then answers a replay exactly as the store
    would, or says it cannot (None): for a session it has not seen, or from before the first event
    it saw of it (a session begun before this process started). An event that does not follow the
    last one kept for its session (a commit that failed between them) starts the tail again.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._tails: OrderedDict[str, Tail] = OrderedDict()

    def add(self, event: Event) -> None:
        if event.id is None or self.max_bytes <= 0:
            return
        tail = self._tails.get(event.session_id)
        if tail is not None and event.id == tail.last_id + 1:
            tail.types.append(event.type)
            tail.frames.append(event.frame)
            added = len(event.frame) + EVENT_OVERHEAD
            tail.size += added
            self.size += added
            self._tails.move_to_end(event.session_id)
        else:
            self.forget(event.session_id)
            tail = self._tails[event.session_id] = Tail(event)
            self.size += tail.size
        while self.size > self.max_bytes and self._tails:
            _, evicted = self._tails.popitem(last=False)
            self.size -= evicted.size

    def after(self, session_id: str, after_id: int) -> list[Event] | None:
        """The session's events after `after_id`, or None if they are not all here."""
        tail = self._tails.get(session_id)
        if tail is None or after_id < tail.first_id - 1:
            return None
        return tail.after(session_id, after_id)

    def forget(self, session_id: str) -> None:
        tail = self._tails.pop(session_id, None)
        if tail is not None:
            self.size -= tail.size
