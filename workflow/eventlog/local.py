"""The event log of one process: events committed to its store, then offered to its subscribers."""

from __future__ import annotations

from core.events import Event
from core.store import SessionStore
from workflow.eventlog.fanout import FanOutEventLog
from workflow.eventlog.recent import RecentEvents
from workflow.eventlog.subscription import CloseReason


class LocalEventLog(FanOutEventLog):
    """Commits through the session store; fans each committed event out to this process's readers.

    Every event a subscriber can see was appended in this process, so the shared commit-then-offer
    path (workflow/eventlog/fanout.py) is the whole of it. Each event's frame was encoded once when
    it was made: every subscriber is handed the same bytes.

    Every event of its sessions is committed here, so it can also keep their latest events in
    memory (`recent_bytes` of them; 0 keeps none) and serve replays from there: a stream that
    attaches, or reconnects with Last-Event-ID, then costs no read of the store.
    """

    def __init__(self, store: SessionStore, subscriber_buffer: int, recent_bytes: int = 0) -> None:
        super().__init__(store, subscriber_buffer)
        # On a store other processes write too, events would be committed that this one never sees.
        self.recent = RecentEvents(0 if store.shared else recent_bytes)

    def _committed(self, event: Event) -> None:
        self.recent.add(event)
        super()._committed(event)

    async def read_after(self, session_id: str, after_id: int) -> list[Event]:
        kept = self.recent.after(session_id, after_id)
        return kept if kept is not None else await super().read_after(session_id, after_id)

    def close_session(self, session_id: str, reason: CloseReason) -> None:
        if reason == CloseReason.DELETED:
            self.recent.forget(session_id)
        super().close_session(session_id, reason)
