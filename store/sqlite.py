"""Sessions, event logs and images in one SQLite file (WAL), written by a group-commit thread.

Durability: the journal is WAL with `synchronous=NORMAL`. Every write is committed before the
caller hears back, and a commit survives the process being killed at any moment. A power loss or
an operating-system crash can lose the last commits (those not yet checkpointed from the WAL into
the database), never the database's consistency.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from core.errors import PendingLimitReached, SessionNotFound, StoreUnavailable
from core.events import Event
from core.models import Session, SessionStatus, rfc3339, utcnow
from core.store import FINISHED, UNFINISHED, Delivery, SessionStore, StoredImage
from store import schema
from store.records import COLUMNS, Row, session_from_row, session_to_row
from store.writer import GroupCommitWriter, Insert

T = TypeVar("T")

SESSION_SELECT = f"SELECT {', '.join(COLUMNS)} FROM sessions"
LAST_EVENT_ID = "SELECT COALESCE(MAX(id), 0) FROM events WHERE session_id = ?"
INSERT_SESSION = f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
# Never an upsert: a write from a run or a cancel still in flight must not bring back a deleted row.
UPDATE_SESSION = f"UPDATE sessions SET {', '.join(f'{c} = ?' for c in COLUMNS[1:])} WHERE id = ?"
COUNT_PENDING = "SELECT n FROM session_counts WHERE owner = ? AND status = 'pending'"
INSERT_EVENTS = "INSERT INTO events (session_id, id, type, payload) VALUES (?, ?, ?, ?)"
DELIVERY_COLUMNS = (
    "id, session_id, event_type, url, payload, created_at, next_attempt_at, attempts, status, "
    "last_error, delivered_at"
)
INSERT_DELIVERIES = f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _delivery_row(d: Delivery) -> tuple[Any, ...]:
    return (
        d.id,
        d.session_id,
        d.event_type,
        d.url,
        d.payload,
        d.created_at,
        d.next_attempt_at,
        d.attempts,
        d.status,
        d.last_error,
        d.delivered_at,
    )


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(
        id=row[0],
        session_id=row[1],
        event_type=row[2],
        url=row[3],
        payload=bytes(row[4]),
        created_at=row[5],
        next_attempt_at=row[6],
        attempts=row[7],
        status=row[8],
        last_error=row[9],
        delivered_at=row[10],
    )


def _configure(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA busy_timeout = 5000")
    connection.execute("PRAGMA foreign_keys = ON")


def _delete_sessions(connection: sqlite3.Connection, session_ids: Sequence[str]) -> int:
    # Their events and images go with them (ON DELETE CASCADE).
    return sum(
        connection.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount
        for session_id in session_ids
    )


def _update_session(connection: sqlite3.Connection, row: Row) -> None:
    if connection.execute(UPDATE_SESSION, (*row[1:], row[0])).rowcount == 0:
        raise SessionNotFound(row[0])


@contextlib.contextmanager
def _session_must_exist(session_id: str) -> Iterator[None]:
    """A write for a deleted session breaks its foreign key: say which session is gone."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" in str(exc):
            raise SessionNotFound(session_id) from exc
        raise


class _EventInsert(Insert):
    """A session's events, and nothing else: made in one statement with its neighbours'."""

    __slots__ = ("session_id",)

    def __init__(self, session_id: str, rows: list[tuple[Any, ...]]) -> None:
        super().__init__(INSERT_EVENTS, rows)
        self.session_id = session_id

    def __call__(self, connection: sqlite3.Connection) -> None:
        with _session_must_exist(self.session_id):
            super().__call__(connection)


class SQLiteStore(SessionStore):
    kind = "sqlite"

    def __init__(self, path: Path, commit_window: float = 0.002) -> None:
        self.path = path
        self._writer = GroupCommitWriter(
            self._open_writer, window=commit_window, wrap_error=self._write_error
        )
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-read")
        self._local = threading.local()  # one read connection per reader thread
        self._read_connections: list[sqlite3.Connection] = []

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, commit_window: float = 0.002) -> SQLiteStore:
        """Open (creating if need be) the database; raises StoreUnavailable naming the path."""
        store = cls(path, commit_window)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            await store._writer.start()
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open the database {path}: {exc}") from exc
        return store

    def _open_writer(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            _configure(connection)
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch the journal to WAL (it is {mode})")
            connection.execute("PRAGMA synchronous = NORMAL")
            schema.prepare(connection)
            # Prove now that the file can be written: a read-only database should stop the start,
            # not fail the first request.
            connection.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_opened_at', ?)", (rfc3339(utcnow()),)
            )
        except BaseException:
            connection.close()
            raise
        return connection

    # -- plumbing ------------------------------------------------------------------------------

    def _write_error(self, exc: sqlite3.Error) -> StoreUnavailable:
        return StoreUnavailable(f"cannot write to the database {self.path}: {exc}")

    def _write(self, operation: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue a write now; the future completes once it is committed (StoreUnavailable if not)."""
        return self._writer.submit(operation)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            connection = getattr(self._local, "connection", None)
            if connection is None:
                # Used by this thread only; closed from the loop's thread at shutdown.
                connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                _configure(connection)
                connection.execute("PRAGMA query_only = ON")
                self._local.connection = connection
                self._read_connections.append(connection)
            return query(connection)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read the database {self.path}: {exc}") from exc

    # -- sessions ------------------------------------------------------------------------------

    async def create(self, session: Session, max_pending: int | None = None) -> None:
        row = session_to_row(session)

        def insert(connection: sqlite3.Connection) -> PendingLimitReached | None:
            # Counted in the transaction that inserts: no other write runs in between. A refusal is
            # returned, not raised, so the writer does not redo the rest of its batch for it.
            if max_pending is not None:
                found = connection.execute(COUNT_PENDING, (session.owner,)).fetchone()
                if found is not None and found[0] >= max_pending:
                    return PendingLimitReached(found[0])
            connection.execute(INSERT_SESSION, row)
            return None

        refused = await self._write(insert)
        if refused is not None:
            raise refused

    async def update(self, session: Session) -> None:
        # The row is taken now, on the loop's thread: the session may change before the write runs.
        row = session_to_row(session)
        await self._write(lambda c: _update_session(c, row))

    async def get(self, session_id: str) -> Session | None:
        def query(connection: sqlite3.Connection) -> Session | None:
            row = connection.execute(f"{SESSION_SELECT} WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                return None
            return session_from_row(row, connection.execute(LAST_EVENT_ID, (session_id,)).fetchone()[0])

        return await self._read(query)

    async def delete(self, session_id: str) -> bool:
        return bool(await self._write(lambda c: _delete_sessions(c, [session_id])))

    async def newest(
        self,
        limit: int,
        status: SessionStatus | None = None,
        before: str | None = None,
        owner: str | None = None,
    ) -> list[Session]:
        conditions, params = [], []
        if owner is not None:
            conditions.append("owner = ?")
            params.append(owner)
        if status is not None:
            conditions.append("status = ?")
            params.append(status.value)
        if before is not None:
            conditions.append("seq < COALESCE((SELECT seq FROM sessions WHERE id = ?), 0)")
            params.append(before)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"{SESSION_SELECT}{where} ORDER BY seq DESC LIMIT ?"
        return await self._sessions(sql, (*params, limit))

    async def unfinished(self) -> list[Session]:
        marks = ", ".join("?" * len(UNFINISHED))
        sql = f"{SESSION_SELECT} WHERE status IN ({marks}) ORDER BY seq"
        return await self._sessions(sql, tuple(s.value for s in UNFINISHED))

    async def _sessions(self, sql: str, params: tuple[Any, ...]) -> list[Session]:
        def query(connection: sqlite3.Connection) -> list[Session]:
            rows = connection.execute(sql, params).fetchall()
            return [
                session_from_row(row, connection.execute(LAST_EVENT_ID, (row[0],)).fetchone()[0])
                for row in rows
            ]

        return await self._read(query)

    async def count(self, owner: str | None = None) -> dict[str, int]:
        # From the counts the schema's triggers keep: a row per owner and status, not per session.
        params: tuple[str, ...] = ()
        if owner is None:
            sql = "SELECT status, SUM(n) FROM session_counts GROUP BY status HAVING SUM(n) > 0"
        else:
            sql, params = "SELECT status, n FROM session_counts WHERE owner = ? AND n > 0", (owner,)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return dict(rows)

    # -- events and images ---------------------------------------------------------------------

    def append_events(
        self,
        session_id: str,
        events: Sequence[Event],
        session: Session | None = None,
        outbox: Sequence[Delivery] = (),
    ) -> asyncio.Future[None]:
        rows = [(session_id, event.id, event.type, event.payload) for event in events]
        if session is None and not outbox:
            return self._write(_EventInsert(session_id, rows))
        session_row = session_to_row(session) if session is not None else None  # taken now, as in update
        deliveries = [_delivery_row(delivery) for delivery in outbox]

        def write(connection: sqlite3.Connection) -> None:
            if session_row is not None:
                _update_session(connection, session_row)
            with _session_must_exist(session_id):
                connection.executemany(INSERT_EVENTS, rows)
                if deliveries:
                    connection.executemany(INSERT_DELIVERIES, deliveries)

        return self._write(write)

    async def events_after(self, session_id: str, after_id: int) -> list[Event]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, type, payload FROM events WHERE session_id = ? AND id > ? ORDER BY id",
                (session_id, after_id),
            ).fetchall()
        )
        return [Event.stored(event_id, kind, session_id, payload) for event_id, kind, payload in rows]

    async def put_image(self, session_id: str, name: str, image: StoredImage) -> None:
        def write(connection: sqlite3.Connection) -> None:
            with _session_must_exist(session_id):
                connection.execute(
                    "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?)",
                    (session_id, name, image.content_type, image.data),
                )

        await self._write(write)

    async def get_image(self, session_id: str, name: str) -> StoredImage | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT content_type, data FROM images WHERE session_id = ? AND name = ?", (session_id, name)
            ).fetchone()
        )
        return StoredImage(row[0], bytes(row[1])) if row else None

    # -- upkeep --------------------------------------------------------------------------------

    async def prune(
        self, finished_before: datetime, keep_at_most: int, pending_before: datetime | None = None
    ) -> list[str]:
        finished = tuple(s.value for s in FINISHED)
        marks = ", ".join("?" * len(finished))
        pending = SessionStatus.PENDING.value

        def oldest(connection: sqlite3.Connection, condition: str, params: tuple[Any, ...]) -> list[str]:
            rows = connection.execute(f"SELECT id FROM sessions WHERE {condition} ORDER BY seq", params)
            return [row[0] for row in rows]

        def write(connection: sqlite3.Connection) -> list[str]:
            doomed = oldest(
                connection, f"status IN ({marks}) AND updated_at < ?", (*finished, rfc3339(finished_before))
            )
            if pending_before is not None:
                doomed += oldest(
                    connection, "status = ? AND created_at < ?", (pending, rfc3339(pending_before))
                )
            total = connection.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
            excess = total - len(doomed) - keep_at_most
            if excess > 0:
                # Room is made from the oldest finished sessions, then (when eviction is allowed)
                # from the oldest that nobody ever ran: never from running or interrupted ones.
                candidates = oldest(connection, f"status IN ({marks})", finished)
                if pending_before is not None:
                    candidates += oldest(connection, "status = ?", (pending,))
                doomed += [i for i in candidates if i not in set(doomed)][:excess]
            _delete_sessions(connection, doomed)
            return doomed

        return await self._write(write)

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        sql = (
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?"
        )
        rows = await self._read(lambda c: c.execute(sql, (now, limit)).fetchall())
        return [_delivery(row) for row in rows]

    async def next_delivery_at(self) -> float | None:
        sql = "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'"
        row = await self._read(lambda c: c.execute(sql).fetchone())
        return row[0] if row else None

    async def record_attempt(self, delivery: Delivery) -> None:
        values = (
            delivery.attempts,
            delivery.next_attempt_at,
            delivery.status,
            delivery.last_error,
            delivery.delivered_at,
            delivery.id,
        )
        sql = (
            "UPDATE deliveries SET attempts = ?, next_attempt_at = ?, status = ?, last_error = ?, "
            "delivered_at = ? WHERE id = ?"
        )
        await self._write(lambda c: c.execute(sql, values))

    async def deliveries(self, session_id: str) -> list[Delivery]:
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE session_id = ? ORDER BY created_at, rowid"
        rows = await self._read(lambda c: c.execute(sql, (session_id,)).fetchall())
        return [_delivery(row) for row in rows]

    async def describe(self) -> dict[str, Any]:
        def file_facts() -> tuple[int, bool]:
            files = [Path(f"{self.path}{suffix}") for suffix in ("", "-wal", "-shm")]
            return sum(f.stat().st_size for f in files if f.exists()), os.access(self.path, os.W_OK)

        size, writable = await asyncio.get_running_loop().run_in_executor(self._readers, file_facts)
        return {
            "kind": self.kind,
            "path": str(self.path),
            "size_bytes": size,
            "writable": writable and self._writer.last_error is None,
            "commits": self._writer.commits,
            "pending_writes": self._writer.pending,
        }

    async def close(self) -> None:
        await self._writer.stop()
        self._readers.shutdown(wait=True)
        for connection in self._read_connections:
            connection.close()
