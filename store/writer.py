"""One writer thread that owns the SQLite connection and commits queued writes in groups."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from core import metrics

log = logging.getLogger("orchestrator.store")

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]
_STOP = object()


class Insert:
    """A write that only inserts rows with one statement, answering None.

    Consecutive inserts of a group with the same statement are made by one `executemany`, not one
    Python call each: a run's events are most of what is written, one or a few to an append. If
    that fails, each is made again on its own (as every operation is then), and `__call__` says
    what its own failure means.
    """

    __slots__ = ("rows", "sql")

    def __init__(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.sql, self.rows = sql, rows

    def __call__(self, connection: sqlite3.Connection) -> None:
        connection.executemany(self.sql, self.rows)


class GroupCommitWriter:
    """Runs write operations on one thread, many to a transaction.

    A write waits in a queue; the thread takes everything queued (up to `batch` operations, and
    for up to `window` seconds after the first), runs each inside its own SAVEPOINT so one failing
    operation does not undo the others, commits once, and only then answers each caller. So the
    IOLoop never blocks on the database, and many sessions' events share a commit.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        window: float,
        batch: int = 500,
        wrap_error: Callable[[sqlite3.Error], Exception] = lambda exc: exc,
    ) -> None:
        self._connect = connect
        self.window = window
        self.batch = batch
        self._wrap_error = wrap_error
        self.pending = 0  # writes submitted and not yet answered
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._opened: asyncio.Future[None] | None = None
        self.commits = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        """Open the connection on the writer thread; raises what opening it raised."""
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        self._thread.start()
        await self._opened

    def submit(self, operation: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue `operation(connection)` now; the future completes once it is committed.

        Writes are committed, and their futures completed, in the order they were submitted.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.pending += 1
        self._queue.put((operation, future, loop))
        return future

    async def stop(self) -> None:
        """Commit what is queued, then close the connection and end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _answer(self, settlements: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        """On the loop's thread: the writes are made (or failed) and their callers hear so."""
        self.pending -= len(settlements)
        for future, ok, value in settlements:
            _settle(future, ok, value)

    def _run(self) -> None:
        assert self._opened is not None
        opened = self._opened
        try:
            connection = self._connect()
        except BaseException as exc:  # hand every failure to the caller of start()
            opened.get_loop().call_soon_threadsafe(_settle, opened, False, exc)
            return
        opened.get_loop().call_soon_threadsafe(_settle, opened, True, None)
        try:
            while True:
                batch = self._next_batch()
                stopping = batch and batch[-1] is _STOP
                work = [item for item in batch if item is not _STOP]
                if work:
                    self._commit(connection, work)
                if stopping:
                    return
        finally:
            connection.close()

    def _next_batch(self) -> list[Any]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.window
        while len(batch) < self.batch and batch[-1] is not _STOP:
            try:
                remaining = deadline - time.monotonic()
                batch.append(
                    self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _commit(self, connection: sqlite3.Connection, work: list[Any]) -> None:
        began = time.perf_counter()
        try:
            try:
                outcomes = self._transaction(connection, work, isolate=False)
            except _OperationFailed:
                # One operation failed and took the transaction with it: run them again, each in
                # its own savepoint, so only the failing one fails. Rare, so the common path stays
                # lean. (Inside the outer try: if this commit fails too, every caller still hears.)
                outcomes = self._transaction(connection, work, isolate=True)
        except sqlite3.Error as exc:
            # The commit itself failed (read-only file, disk full, I/O error): nothing was kept.
            log.error("database commit of %d writes failed: %s", len(work), exc)
            self.last_error = str(exc)
            outcomes = [(False, exc)] * len(work)
            metrics.STORE_COMMIT_FAILURES.inc()
        else:
            metrics.STORE_COMMIT_DURATION.observe(time.perf_counter() - began)
            metrics.STORE_COMMIT_BATCH.observe(len(work))
        loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future, loop), (ok, value) in zip(work, outcomes, strict=True):
            if isinstance(value, sqlite3.Error):
                value = self._wrap_error(value)
            loops.setdefault(loop, []).append((future, ok, value))
        for loop, settlements in loops.items():
            # One wake-up of the loop per commit, however many writes it answers.
            loop.call_soon_threadsafe(self._answer, settlements)

    def _transaction(
        self, connection: sqlite3.Connection, work: list[Any], isolate: bool
    ) -> list[tuple[bool, Any]]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            if isolate:
                outcomes = [self._isolated(connection, operation) for operation, _, _ in work]
            else:
                try:
                    outcomes = self._together(connection, [operation for operation, _, _ in work])
                except Exception as exc:
                    raise _OperationFailed from exc
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise
        self.commits += 1
        self.last_error = None
        return outcomes

    @staticmethod
    def _together(connection: sqlite3.Connection, operations: list[Operation]) -> list[tuple[bool, Any]]:
        """Each operation's result, in order; each run of inserts of one statement made as one."""
        outcomes: list[tuple[bool, Any]] = []
        for _, group in itertools.groupby(operations, _statement):
            together = list(group)
            if len(together) == 1:
                outcomes.append((True, together[0](connection)))
                continue
            inserts = [insert for insert in together if isinstance(insert, Insert)]  # all (see _statement)
            connection.executemany(inserts[0].sql, [row for insert in inserts for row in insert.rows])
            outcomes += [(True, None)] * len(inserts)
        return outcomes

    @staticmethod
    def _isolated(connection: sqlite3.Connection, operation: Operation) -> tuple[bool, Any]:
        connection.execute("SAVEPOINT operation")
        try:
            result = operation(connection)
        except Exception as exc:
            connection.execute("ROLLBACK TO operation")
            connection.execute("RELEASE operation")
            return False, exc
        connection.execute("RELEASE operation")
        return True, result


def _statement(operation: Operation) -> object:
    """What groups operations made together: an insert's statement; any other is alone."""
    return operation.sql if isinstance(operation, Insert) else object()


class _OperationFailed(Exception):
    """An operation raised inside a shared transaction; the batch is rerun one savepoint each."""


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller gave up waiting
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
