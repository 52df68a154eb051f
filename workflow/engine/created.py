"""Sessions this process created that no command has touched since: the first command takes one as stored."""

from __future__ import annotations

from collections import OrderedDict

from core.models import Session, SessionStatus

# Sessions are mostly started right after they are created; this many of the newest never-touched
# ones are kept (a pending session is a few hundred bytes), and an older one is read back instead.
KEPT = 256


class CreatedSessions:
    """After its create, only a command holding the session's lock (start, cancel, delete) or a
    prune changes a session. So the first such command can take the session as this process
    created and stored it, instead of reading it back: a start then answers without a read.

    Taken, it is gone from here: whatever the command does to it, and whether that is stored, is
    the store's to say from then on. A prune forgets what it deleted; and every command that takes
    one writes, so one that takes a session pruned a moment before still finds it gone.
    Only for a store no other process writes.
    """

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def keep(self, session: Session) -> None:
        assert session.status == SessionStatus.PENDING, session.status
        self._sessions[session.id] = session
        while len(self._sessions) > self._kept:
            self._sessions.popitem(last=False)

    def take(self, session_id: str) -> Session | None:
        return self._sessions.pop(session_id, None)

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
