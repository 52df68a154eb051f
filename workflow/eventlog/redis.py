"""The event log of many instances on one Redis: what this instance appends is offered to its subscribers
as soon as it is committed; what other instances append comes from a few readers of the sessions' streams.

How the streams are read: a fixed number of reader tasks (`readers`, 2 by default), each with its own
connection, share out the sessions that have a subscriber here (by a hash of the session id). A reader
sends one `XREAD BLOCK` naming every stream it watches, each from the last entry it read there, and
hands each entry, rebuilt once into an Event (one frame), to every subscription of that session here.
So the commands do not grow with the subscribers: one XREAD brings a batch of events for all of them.

A reader blocked in Redis does not see a stream that was added meanwhile, so adding one (a session's
first subscriber here) wakes it: an entry added to the reader's own wake-up stream, which every XREAD
of that reader names too (`{prefix}wake:{instance}:{n}`, one entry, expiring when unused). A stream
nobody here watches any more is simply left out of the next XREAD.

On a connection error a reader waits (exponential back-off with jitter, capped) and reads again from
the same positions, so nothing is skipped; the subscriptions stay open meanwhile. Deletions reach the
other instances as a notice on the control channel, which one connection per instance listens to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
import zlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import ujson
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.typing import KeyT, StreamIdT

from core.errors import StoreUnavailable
from core.events import TERMINAL_TYPES, Event, dumps
from core.store import SessionStore
from store.redis_keys import DEFAULT_PREFIX, Keys, entry_id, event_id
from workflow.eventlog.fanout import FanOutEventLog
from workflow.eventlog.subscription import CloseReason, Subscription

if TYPE_CHECKING:
    from store.redis import RedisStore

log = logging.getLogger("orchestrator.eventlog")

DELETED_NOTICE = "session-deleted"  # {"type": ..., "session_id": ..., "from": instance} on {p}control
CANCEL_REQUEST = "cancel-run"  # the same shape: whoever runs the session cancels it
WAKE_TTL_MS = 300_000  # a wake-up stream outlives its instance by this long at most


@dataclass(frozen=True)
class Backoff:
    """How long a reader waits after its `failures`-th failure in a row: doubling from `base`, at most
    `cap`, and each wait drawn between half and all of that, so instances do not retry in step."""

    base: float = 0.1
    cap: float = 10.0

    def delay(self, failures: int) -> float:
        return min(self.cap, self.base * 2 ** min(failures - 1, 30)) * random.uniform(0.5, 1.0)


class _Watch:
    """One session's stream as a reader follows it for this instance's subscribers."""

    __slots__ = ("confirmed", "cursor", "delivered", "key", "reader", "session_id")

    def __init__(self, session_id: str, key: bytes, reader: _Reader, cursor: int) -> None:
        self.session_id = session_id
        self.key = key
        self.reader = reader
        # The last event id read from the stream; until an entry has been read (`confirmed`) it is
        # the lowest position a subscriber asked for, and a later subscriber may lower it.
        self.cursor = cursor
        self.confirmed = False
        # The newest event id this instance appended and offered itself: read again, it is skipped.
        self.delivered = 0


class _Reader:
    """One task and one connection: XREAD BLOCK over every stream it watches, each from its cursor."""

    def __init__(self, owner: RedisEventLog, index: int) -> None:
        self.owner = owner
        self.index = index
        self.wake_key = owner.keys.wake(owner.instance_id, index).encode()
        self.watches: dict[bytes, _Watch] = {}
        # What the next XREAD names: each stream with the entry id it reads after (kept up to date as
        # streams come, go and are read, so an XREAD costs one copy of it, not a pass over the watches).
        self.streams: dict[KeyT, StreamIdT] = {self.wake_key: b"0-0"}
        self.changed = asyncio.Event()  # for a reader with nothing to watch: something to watch now
        self.reading = False  # an XREAD is in flight: a stream added now needs a wake-up
        self.woken = False  # a wake-up was sent for the XREAD in flight
        self.client: aioredis.Redis | None = None
        self.task: asyncio.Task[None] | None = None
        self.xreads = 0
        self.wakeups = 0

    def add(self, watch: _Watch) -> None:
        self.watches[watch.key] = watch
        self.moved(watch)
        self.changed.set()
        if self.reading and not self.woken:
            self.woken = True
            self.owner._spawn(self._wake())

    def moved(self, watch: _Watch) -> None:
        """The watch's cursor changed: the next XREAD reads the stream from there."""
        self.streams[watch.key] = entry_id(watch.cursor)

    def remove(self, watch: _Watch) -> None:
        # No wake-up: an XREAD in flight may still name the stream; what it brings is dropped, and
        # the next XREAD leaves it out.
        if self.watches.get(watch.key) is watch:
            del self.watches[watch.key]
            del self.streams[watch.key]

    async def _wake(self) -> None:
        self.wakeups += 1
        try:
            async with self.owner._commands().pipeline(transaction=False) as pipe:
                pipe.xadd(self.wake_key, {b"w": b"1"}, maxlen=1, approximate=False)
                pipe.pexpire(self.wake_key, WAKE_TTL_MS)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # The XREAD in flight fails too, or ends at its BLOCK timeout: the new stream waits till then.
            self.woken = False
            log.debug("event reader %d: wake-up not sent: %s", self.index, exc)

    async def run(self) -> None:
        failures = 0
        while not self.owner._closed:
            if not self.watches:
                self.changed.clear()
                await self.changed.wait()
                continue
            sent = dict(self.streams)
            self.reading, self.woken = True, False
            try:
                reply = await self._client().xread(sent, count=self.owner.batch, block=self.owner.block_ms)
            except (RedisError, OSError) as exc:
                failures += 1
                delay = self.owner.backoff.delay(failures)
                log.warning(
                    "event reader %d: %s; reading again in %.2f s from where each stream was",
                    self.index,
                    exc or type(exc).__name__,
                    delay,
                )
                await self.disconnect()
                await asyncio.sleep(delay)
                continue
            finally:
                self.reading = False
            if failures:
                log.info("event reader %d reads again after %d failed attempts", self.index, failures)
                failures = 0
            self.xreads += 1
            try:
                self._take(reply, sent)
            except Exception:  # a reader must outlive anything one reply holds
                log.exception("event reader %d could not hand out what it read", self.index)

    def _client(self) -> aioredis.Redis:
        if self.client is None:
            # The socket may stay quiet for the whole BLOCK time; only longer than that is a fault.
            self.client = self.owner._connect(socket_timeout=self.owner.block_ms / 1000 + 5)
        return self.client

    async def disconnect(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _take(self, reply: Any, sent: dict[KeyT, StreamIdT]) -> None:
        for key, entries in reply or ():
            if key == self.wake_key:
                if entries:
                    self.streams[self.wake_key] = entries[-1][0]
                continue
            watch = self.watches.get(key)
            if watch is None or self.streams.get(key) != sent.get(key):
                continue  # gone, or a subscriber lowered its position meanwhile: read again from there
            self.owner._read(watch, entries)
            if self.watches.get(key) is watch:
                self.moved(watch)


class RedisEventLog(FanOutEventLog):
    """The EventLog of an instance sharing one Redis with others (see the module's docstring).

    `store` is the Redis store (its `append_events` commits each event to `{p}events:{id}` in one
    fenced script; `events_after` reads the backlog); `url` is the same Redis, for the readers' and
    the control channel's own connections; `commands`, a client for the odd command (a wake-up, a
    deletion notice), is the log's own unless given (then it is not closed here). `for_store` takes
    the prefix, the instance's name and that client from a RedisStore.
    """

    def __init__(
        self,
        store: SessionStore,
        subscriber_buffer: int,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        instance_id: str | None = None,
        readers: int = 2,
        block_ms: int = 5000,
        batch: int | None = None,
        backoff: Backoff | None = None,
        ready_timeout: float = 2.0,
        control_ping: float = 30.0,
        commands: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(store, subscriber_buffer)
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.url = url
        self.keys = Keys(prefix)
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.block_ms = block_ms
        # Entries of one stream per XREAD: a catch-up never hands a reader more at once than half
        # of what its subscription may hold.
        self.batch = batch or max(1, min(512, subscriber_buffer // 2))
        self.backoff = backoff or Backoff()
        self.ready_timeout = ready_timeout
        self.control_ping = control_ping
        self._readers = [_Reader(self, i) for i in range(readers)]
        self._watches: dict[str, _Watch] = {}
        self._commands_client = commands
        self._own_commands = commands is None
        self._listener: asyncio.Task[None] | None = None
        self._control_heard = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self.events_read = 0  # entries the readers rebuilt and offered (not those appended here)

    @classmethod
    def for_store(cls, store: RedisStore, subscriber_buffer: int, url: str, **options: Any) -> RedisEventLog:
        """The event log beside a RedisStore: its key prefix, its instance name, its client."""
        return cls(
            store,
            subscriber_buffer,
            url,
            prefix=store.keys.prefix,
            instance_id=store.instance,
            commands=store.redis,
            **options,
        )

    # -- subscribing ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the readers and the control listener (the first time), and wait until the control
        channel is subscribed (at most `ready_timeout`), so no deletion announced later is missed."""
        if self._closed:
            return
        if self._listener is None:
            loop = asyncio.get_running_loop()
            for reader in self._readers:
                reader.task = loop.create_task(reader.run(), name=f"event-reader-{reader.index}")
            self._listener = loop.create_task(self._listen(), name="event-log-control")
        if not self._control_heard.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ready_timeout):
                    await self._control_heard.wait()

    async def subscribe(self, session_id: str, after_id: int, *, nothing_after: bool = False) -> Subscription:
        await self.start()
        return await super().subscribe(session_id, after_id, nothing_after=nothing_after)

    def _watch(self, session_id: str, after_id: int) -> None:
        # Before the backlog is read: the reader covers the stream from at most `after_id`. Once it
        # has read an entry, everything up to its cursor was committed before this subscription was
        # in place, so the backlog holds it and the cursor can stay where it is.
        watch = self._watches.get(session_id)
        if watch is None:
            reader = self._readers[zlib.crc32(session_id.encode()) % len(self._readers)]
            watch = _Watch(session_id, self.keys.events(session_id).encode(), reader, after_id)
            self._watches[session_id] = watch
            reader.add(watch)
        elif not watch.confirmed and after_id < watch.cursor:
            watch.cursor = after_id
            watch.reader.moved(watch)

    def _unwatched(self, session_id: str) -> None:
        watch = self._watches.pop(session_id, None)
        if watch is not None:
            watch.reader.remove(watch)

    def _committed(self, event: Event) -> None:
        watch = self._watches.get(event.session_id)
        if watch is not None and event.id is not None and event.id > watch.delivered:
            watch.delivered = event.id
        self._offer(event)

    def _read(self, watch: _Watch, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Entries a reader brought for the stream, oldest first: offer each to the session's
        subscriptions here; a terminal one ends them, as the run that wrote it ends its own."""
        for entry, fields in entries:
            number = event_id(entry)
            if number <= watch.cursor:
                continue
            watch.cursor, watch.confirmed = number, True
            event_type, payload = fields.get(b"type"), fields.get(b"payload")
            if event_type is None or payload is None:
                log.warning("session %s: stream entry %s has no type or payload", watch.session_id, entry)
                continue
            kind = event_type.decode()
            if number > watch.delivered:
                self.events_read += 1
                self._offer(Event.stored(number, kind, watch.session_id, payload))
            if kind in TERMINAL_TYPES:
                self._end_local(watch.session_id, CloseReason.ENDED)
            if self._watches.get(watch.session_id) is not watch:
                return  # nobody here follows it any more

    # -- ending subscriptions ---------------------------------------------------------------------

    def close_session(self, session_id: str, reason: CloseReason) -> None:
        """End the session's subscriptions here; a deletion is announced to the other instances too."""
        super().close_session(session_id, reason)
        if reason == CloseReason.DELETED:
            self._spawn(self._announce_deleted(session_id))

    async def _announce_deleted(self, session_id: str) -> None:
        try:
            await self._publish(DELETED_NOTICE, session_id)
        except (RedisError, OSError) as exc:
            log.warning("could not tell other instances that session %s was deleted: %s", session_id, exc)

    async def request_cancel(self, session_id: str) -> None:
        """Ask the instance that runs the session to cancel it; StoreUnavailable if Redis is not there."""
        try:
            await self._publish(CANCEL_REQUEST, session_id)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"could not reach Redis to ask for the cancellation: {exc}") from exc

    async def _publish(self, kind: str, session_id: str) -> None:
        notice = dumps({"type": kind, "session_id": session_id, "from": self.instance_id})
        await self._commands().publish(self.keys.control, notice)

    async def _listen(self) -> None:
        """Listen to the control channel on one connection, reconnecting (with back-off) as readers do.

        A quiet channel is pinged every `control_ping` seconds; one that answers nothing for two of
        them is taken for a dead connection (a half-open socket would otherwise wait for ever)."""
        failures = 0
        loop = asyncio.get_running_loop()
        while not self._closed:
            client = self._connect(socket_timeout=None)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.keys.control)
                self._control_heard.set()
                if failures:
                    log.info("control channel subscribed again after %d failed attempts", failures)
                    failures = 0
                    await self._end_deleted_unheard()
                heard = loop.time()
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self.control_ping
                    )
                    if message is not None:
                        heard = loop.time()
                        if message.get("type") == "message":
                            self._heard(message["data"])
                    elif loop.time() - heard > 2 * self.control_ping:
                        raise RedisConnectionError("no answer to the last pings")
                    else:
                        await pubsub.ping()
            except (RedisError, OSError) as exc:
                failures += 1
                log.warning("control channel: %s; subscribing again", exc or type(exc).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(self.backoff.delay(failures))

    async def _end_deleted_unheard(self) -> None:
        """Deletion notices published while the channel was down are lost (pub/sub keeps nothing):
        once it is back, look for watched sessions that went meanwhile and end their streams."""
        watched = list(self._subscribers)
        if not watched:
            return
        async with self._commands().pipeline(transaction=False) as pipe:
            for session_id in watched:
                pipe.exists(self.keys.session(session_id))
            found = await pipe.execute()
        for session_id, exists in zip(watched, found, strict=True):
            if not exists:
                log.info("session %s was deleted while the control channel was down", session_id)
                self._end_local(session_id, CloseReason.DELETED)

    def _heard(self, data: bytes) -> None:
        try:
            notice = ujson.loads(data)
            kind, session_id, sender = notice["type"], notice["session_id"], notice.get("from")
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # a notice for someone else
        if not isinstance(session_id, str) or sender == self.instance_id:
            return
        if kind == DELETED_NOTICE:
            self._end_local(session_id, CloseReason.DELETED)
        elif kind == CANCEL_REQUEST and self.on_cancel_request is not None:
            self.on_cancel_request(session_id)

    # -- connections and lifetime -----------------------------------------------------------------

    def _connect(self, socket_timeout: float | None) -> aioredis.Redis:
        """A client of its own connection, which fails at once (the caller decides when to retry)."""
        return aioredis.Redis.from_url(
            self.url,
            protocol=2,
            single_connection_client=True,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _commands(self) -> aioredis.Redis:
        """The connection pool for the odd command (a wake-up, a deletion notice), with redis-py's retries."""
        if self._commands_client is None:
            self._commands_client = aioredis.Redis.from_url(self.url, protocol=2)
        return self._commands_client

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closed:  # nothing runs any more to be woken, nor should anything be announced
            work.close()
            return
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop runs (a synchronous caller): nobody could be listening
            work.close()
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def stats(self) -> dict[str, int]:
        """What the readers did: XREADs sent, wake-ups sent, events rebuilt from the streams."""
        return {
            "xreads": sum(r.xreads for r in self._readers),
            "wakeups": sum(r.wakeups for r in self._readers),
            "events_read": self.events_read,
            "streams": len(self._watches),
        }

    async def close(self) -> None:
        """Stop the readers and the control listener and close their connections (notices still
        being sent get a second to go out). Subscriptions are ended by `close_all`, not here."""
        self._closed = True
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        tasks = {t for t in (*(r.task for r in self._readers), self._listener) if t is not None}
        while tasks:
            # Again until they have stopped: Python 3.11's wait_for (inside redis-py's writes) loses a
            # cancellation that arrives as the write completes, and the task would go on to block.
            for task in tasks:
                task.cancel()
            _, tasks = await asyncio.wait(tasks, timeout=0.5)
        for reader in self._readers:
            await reader.disconnect()
        if self._commands_client is not None and self._own_commands:
            with contextlib.suppress(Exception):
                await self._commands_client.aclose()
            self._commands_client = None
