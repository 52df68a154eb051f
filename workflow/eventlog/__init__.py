"""The event log: publish, commit, deliver; and the subscriptions that read it."""

from workflow.eventlog.base import EventLog
from workflow.eventlog.local import LocalEventLog
from workflow.eventlog.subscription import CloseReason, Subscription

__all__ = ["CloseReason", "EventLog", "LocalEventLog", "Subscription"]
