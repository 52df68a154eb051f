"""The event log: publish, commit, deliver; and the subscriptions that read it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workflow.eventlog.base import EventLog
from workflow.eventlog.local import LocalEventLog
from workflow.eventlog.subscription import CloseReason, Subscription

if TYPE_CHECKING:
    from workflow.eventlog.redis import RedisEventLog

__all__ = ["CloseReason", "EventLog", "LocalEventLog", "RedisEventLog", "Subscription"]


def __getattr__(name: str) -> Any:
    # Imported when first asked for, so that a service on one process never loads the Redis client.
    if name == "RedisEventLog":
        from workflow.eventlog.redis import RedisEventLog

        return RedisEventLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
