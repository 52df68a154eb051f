"""Where the Redis store keeps each thing: one place for the key layout that the store, the event log's
stream readers and the run leases share. Every key starts with the store's prefix (default `orch:`).

    {p}session:{id}          hash   row (JSON of store.records' row), status, owner, seq, created, updated
    {p}seq                   string creation counter (INCR): a session's `seq`
    {p}sessions              zset   seq -> id, every session (creation order, for paging)
    {p}status:{status}       zset   seq -> id, the sessions in that status
    {p}owner:{owner}         zset   seq -> id, the sessions one owner created
    {p}events:{id}           stream the session's event log; entry id "{event id}-1", fields type, payload
    {p}images:{id}           hash   name -> content type and bytes (two fields: "{name}:type", "{name}:data")
    {p}delivery:{msg id}     hash   a webhook delivery (core.store.Delivery's fields)
    {p}deliveries:due        zset   next_attempt_at -> msg id, pending deliveries
    {p}deliveries:{id}       zset   created_at -> msg id, one session's deliveries
    {p}lease:{id}            string "{instance}:{token}" with an expiry: who runs the session (fencing token)
    {p}fence                 string lease token counter (INCR): every claim gets a larger token
    {p}running               zset   lease expiry (epoch ms, Redis's clock) -> id: the fleet's runs, counted
                                    against max_running (an expired lease drops out when next counted)
    {p}queue                 zset   admission number -> id: sessions waiting for a run slot, fleet-wide
    {p}queue-seq             string admission counter (INCR): first come, first served across instances
    {p}control               pub/sub channel: cancel, delete and shutdown notices between instances

Added by the store (store/redis.py), for what it must answer without a scan:

    {p}owner-count:{owner}   hash   status -> how many of the owner's sessions are in it (count(owner))
    {p}retention:finished    zset   updated (epoch ms) -> id, the finished sessions (prune's cutoff)
    {p}retention:pending     zset   created (epoch ms) -> id, the pending sessions (pending_ttl)
    {p}probe:{instance}      string a cheap write that proves the store is writable (describe); 60 s
    {p}rate:...              (keys of the `limits` library) the fleet's rate-limit windows per caller

Added by the event log's stream readers (workflow/eventlog/redis.py):

    {p}wake:{instance}:{n}   stream one entry, added to wake reader n of an instance from its blocking XREAD
                                    when its set of streams changed; expires when unused

The fields, exactly: a session hash holds `row` (the JSON array of store.records' row), `status`,
`owner`, `seq` (from {p}seq), `created` and `updated` (epoch milliseconds, as integers). A delivery
hash holds Delivery's fields by name (`delivered_at` empty for None, floats as Python's repr), and
`n`, its position among its session's deliveries (the order of a tie in `created_at`). A session's
keys are all removed together (one script), and only `create` makes a session hash: every other
write checks it exists, in the same script, so nothing can bring a deleted session back.

A stream entry id carries the event id, so `Last-Event-ID: N` is `XRANGE {p}events:{id} (N-1 +`.
"""

from __future__ import annotations

DEFAULT_PREFIX = "orch:"


class Keys:
    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.seq = f"{prefix}seq"
        self.sessions = f"{prefix}sessions"
        self.deliveries_due = f"{prefix}deliveries:due"
        self.fence = f"{prefix}fence"
        self.running = f"{prefix}running"
        self.queue = f"{prefix}queue"
        self.queue_seq = f"{prefix}queue-seq"
        self.control = f"{prefix}control"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def status(self, status: str) -> str:
        return f"{self.prefix}status:{status}"

    def owner(self, owner: str) -> str:
        return f"{self.prefix}owner:{owner}"

    def events(self, session_id: str) -> str:
        return f"{self.prefix}events:{session_id}"

    def images(self, session_id: str) -> str:
        return f"{self.prefix}images:{session_id}"

    def delivery(self, delivery_id: str) -> str:
        return f"{self.prefix}delivery:{delivery_id}"

    def session_deliveries(self, session_id: str) -> str:
        return f"{self.prefix}deliveries:{session_id}"

    def lease(self, session_id: str) -> str:
        return f"{self.prefix}lease:{session_id}"

    def owner_counts(self, owner: str) -> str:
        return f"{self.prefix}owner-count:{owner}"

    @property
    def retention_finished(self) -> str:
        return f"{self.prefix}retention:finished"

    @property
    def retention_pending(self) -> str:
        return f"{self.prefix}retention:pending"

    def probe(self, instance: str) -> str:
        return f"{self.prefix}probe:{instance}"

    def wake(self, instance: str, reader: int) -> str:
        return f"{self.prefix}wake:{instance}:{reader}"

    @property
    def rate_limits(self) -> str:
        """The prefix the rate limiter's keys start with."""
        return f"{self.prefix}rate"


def entry_id(event_id: int) -> str:
    """The stream entry id that carries an event id."""
    return f"{event_id}-1"


def event_id(entry: str | bytes) -> int:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.split("-", 1)[0])
