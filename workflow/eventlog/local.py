"""The event log of one process: events committed to its store, then offered to its subscribers."""

from __future__ import annotations

from workflow.eventlog.fanout import FanOutEventLog


class LocalEventLog(FanOutEventLog):
    """Commits through the session store; fans each committed event out to this process's readers.

    Every event a subscriber can see was appended in this process, so the shared commit-then-offer
    path (workflow/eventlog/fanout.py) is the whole of it. Each event's frame was encoded once when
    it was made: every subscriber is handed the same bytes.
    """
