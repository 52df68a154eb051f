"""The service's Prometheus metrics: every metric object, on the service's own registry.

Any layer may import this module (it imports nothing of the project's own); each layer updates
the metrics it sees, and `GET /metrics` (handlers/metrics.py) exposes REGISTRY. Names follow
Prometheus' conventions: the `orchestrator_` prefix, base units (seconds, bytes) and `_total` for
counters. Label values come from small fixed sets (route patterns, never raw paths or ids).

The figures a scrape reads at that moment (sessions by status, runs, the queue, subscribers, the
store's file) are gauges the metrics handler sets before it renders them.
"""

from __future__ import annotations

import functools

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector

# No `_created` series beside every counter and histogram: the text format gains nothing from them.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
# The standard process_* (CPU, memory, file descriptors, start time), python_info and python_gc_*.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Seconds: from a few milliseconds (a read) to minutes (a model writing a long section).
SHORT = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LONG = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
STREAM = (0.1, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
COMMIT = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH = (1, 2, 5, 10, 25, 50, 100, 250, 500)

# -- HTTP (handlers/metrics.py, from server.log_request: once per finished request) ---------------

HTTP_REQUESTS = Counter(
    "orchestrator_http_requests",
    "HTTP requests answered, by route pattern (`unmatched` for a path no route has), method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "orchestrator_http_request_duration_seconds",
    "Time from a request's arrival to its answer's end, by route and method. Event streams are left "
    "out (they last as long as the client watches): see orchestrator_sse_stream_duration_seconds.",
    ["route", "method"],
    buckets=SHORT,
    registry=REGISTRY,
)

# -- SSE streams (handlers/stream.py) and the event log (workflow/eventlog) -------------------------

SSE_STREAMS_OPEN = Gauge(
    "orchestrator_sse_streams_open", "Event streams being written to clients now.", registry=REGISTRY
)
SSE_STREAM_DURATION = Histogram(
    "orchestrator_sse_stream_duration_seconds",
    "How long event streams stayed open, from the request to its end.",
    buckets=STREAM,
    registry=REGISTRY,
)
SSE_SENT_BYTES = Counter(
    "orchestrator_sse_sent_bytes",
    "Bytes written to event streams and taken by the clients: frames, retry lines, heartbeats.",
    registry=REGISTRY,
)
SSE_CUT_OFF = Counter(
    "orchestrator_sse_cut_off",
    "Streams cut off for a slow reader: `overflow` (subscriber_buffer events behind) or "
    "`flush_timeout` (a write waited longer than flush_timeout).",
    ["reason"],
    registry=REGISTRY,
)
for _reason in ("overflow", "flush_timeout"):
    SSE_CUT_OFF.labels(_reason)
EVENTS_APPENDED = Counter(
    "orchestrator_events_appended",
    "Events committed to sessions' logs (each is then offered to the session's subscribers), by type.",
    ["type"],
    registry=REGISTRY,
)


@functools.cache
def events_appended(event_type: str) -> Counter:
    """EVENTS_APPENDED's counter for one type, looked up once: `labels()` takes a lock and checks
    its arguments each time, twice what the increment costs, once per event. Types are few."""
    return EVENTS_APPENDED.labels(event_type)


EVENTS_DELIVERED = Counter(
    "orchestrator_events_delivered",
    "Logged events written to event streams and taken by the clients (one per event per stream; "
    "the per-connection `connected` event is not counted).",
    registry=REGISTRY,
)
SUBSCRIBERS = Gauge(
    "orchestrator_subscribers",
    "Subscriptions to sessions' event logs in this process (read at scrape time).",
    registry=REGISTRY,
)

# -- sessions (read at scrape time) and the run queue -------------------------------------------------

SESSIONS = Gauge(
    "orchestrator_sessions",
    "Sessions in the store, by status (read at scrape time).",
    ["status"],
    registry=REGISTRY,
)
RUNNING_SESSIONS = Gauge(
    "orchestrator_running_sessions",
    "Sessions running in this process (read at scrape time).",
    registry=REGISTRY,
)
QUEUED_SESSIONS = Gauge(
    "orchestrator_queued_sessions",
    "Sessions waiting for a run slot in this process (on store=redis, in the fleet), read at scrape time.",
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "orchestrator_queue_wait_seconds",
    "How long a session waited in the queue for a run slot before it started.",
    buckets=(0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
    registry=REGISTRY,
)

# -- steps and models (workflow/engine/pipeline.py, workflow/steps/sink.py) --------------------------

STEP_DURATION = Histogram(
    "orchestrator_step_duration_seconds",
    "How long pipeline steps ran, by step, provider and outcome (completed, failed, stopped).",
    ["step", "provider", "outcome"],
    buckets=LONG,
    registry=REGISTRY,
)
STEP_ERRORS = Counter(
    "orchestrator_step_errors",
    "Steps that failed, by step, provider and reason: timeout (step_timeout), budget (token_budget), "
    "provider (the model server or the provider said no) or error (anything else).",
    ["step", "provider", "reason"],
    registry=REGISTRY,
)
MODEL_TOKENS = Counter(
    "orchestrator_model_tokens",
    "Tokens models used, by provider and kind (prompt, completion); estimated ones included when a "
    "server did not report usage.",
    ["provider", "kind"],
    registry=REGISTRY,
)
MODEL_COST = Counter(
    "orchestrator_model_cost",
    "What those tokens cost, at llm_prompt_price and llm_completion_price (per million tokens, in "
    "their currency); stays 0 without prices.",
    ["provider"],
    registry=REGISTRY,
)
MODEL_RETRIES = Counter(
    "orchestrator_model_retries",
    "Calls retried after a transient failure (each one a step-retry event), by provider and step.",
    ["provider", "step"],
    registry=REGISTRY,
)

# -- webhooks (workflow/webhooks/dispatcher.py) ------------------------------------------------------

WEBHOOK_ATTEMPTS = Counter(
    "orchestrator_webhook_attempts",
    "Webhook delivery attempts by what came of them: delivered (2xx), retry (to be tried again), "
    "gone (410: stopped by the receiver), failed (given up on, or the destination was refused).",
    ["outcome"],
    registry=REGISTRY,
)

# -- the SQLite store's group-commit writer (store/writer.py; on its thread) -------------------------

STORE_COMMIT_DURATION = Histogram(
    "orchestrator_store_commit_duration_seconds",
    "How long each group commit of the SQLite writer took, from BEGIN to COMMIT.",
    buckets=COMMIT,
    registry=REGISTRY,
)
STORE_COMMIT_BATCH = Histogram(
    "orchestrator_store_commit_batch_size",
    "Writes that shared one commit of the SQLite writer.",
    buckets=BATCH,
    registry=REGISTRY,
)
STORE_COMMIT_FAILURES = Counter(
    "orchestrator_store_commit_failures",
    "Group commits that failed (disk full, read-only file, I/O error): none of their writes was kept.",
    registry=REGISTRY,
)
STORE_SIZE = Gauge(
    "orchestrator_store_size_bytes",
    "Size of the SQLite database with its WAL (read at scrape time; 0 for the memory store).",
    registry=REGISTRY,
)
STORE_WRITABLE = Gauge(
    "orchestrator_store_writable",
    "1 while the store takes writes, 0 when its last commit failed (read at scrape time).",
    registry=REGISTRY,
)
STORE_PENDING_WRITES = Gauge(
    "orchestrator_store_pending_writes",
    "Writes submitted to the SQLite writer and not yet committed (read at scrape time).",
    registry=REGISTRY,
)
