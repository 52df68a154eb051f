"""The engine's options: built by the settings (conf/settings.py holds every default), none here."""

from __future__ import annotations

from dataclasses import dataclass

from workflow.steps.retry import RetryPolicy
from workflow.steps.sink import UsagePolicy


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    step_timeout: float  # seconds one step may run
    subscriber_buffer: int  # events one stream may fall behind before it is cut off
    replay_cache_bytes: int  # the latest events kept in memory to serve replays (0: none)
    retention: float  # seconds a finished session is kept
    pending_ttl: float  # seconds a session nobody runs is kept
    max_sessions: int
    max_pending_per_client: int
    max_topic_length: int  # characters
    max_running: int  # sessions running at once in this process; more wait in the queue (0: no cap)
    max_queued: int  # sessions waiting; a start beyond it is refused
    retry: RetryPolicy  # of a model call (or a step), after a transient provider failure
    optional_steps: frozenset[str]  # steps whose failure leaves the lesson partial
    usage: UsagePolicy
