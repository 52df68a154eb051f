"""The sessions that lately finished in this process, kept as they were stored, for the reads that follow."""

from __future__ import annotations

from collections import OrderedDict

from core.models import Session

# A client that watched a run reads its result right after the terminal event; this many of the
# newest are kept (a finished session's state is tens of KiB, mostly the lesson's text).
KEPT = 64
# Ids forgotten lately. A run's end and a prune or delete of it can be answered by the same commit
# and go on in either order: a keep that comes after the forget must not bring the session back.
FORGOTTEN = 1024


class FinishedSessions:
    """A finished session changes no more: only a delete or a prune removes it. So one this process
    stored as finished can be answered from memory, not read (and decoded) back from the store.

    Only for a store no other process writes: on a shared one, another instance may delete it.
    Whoever deletes a session here forgets it here first.
    """

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._forgotten: OrderedDict[str, None] = OrderedDict()

    def keep(self, session: Session) -> None:
        assert session.status.finished, session.status
        if session.id in self._forgotten:
            return
        self._sessions[session.id] = session
        self._sessions.move_to_end(session.id)
        while len(self._sessions) > self._kept:
            self._sessions.popitem(last=False)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._forgotten[session_id] = None
        while len(self._forgotten) > FORGOTTEN:
            self._forgotten.popitem(last=False)
