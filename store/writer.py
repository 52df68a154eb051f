"""One writer thread that owns the SQLite connection and commits queued writes in groups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("orchestrator.store")

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]
_STOP = object()


class GroupCommitWriter:
    """Runs write operations on one thread, many to a transaction.

    A write waits in a queue; the thread takes everything queued (up to `batch` operations, and
    for up to `window` seconds after the first), runs each inside its own SAVEPOINT so one failing
    operation does not undo the others, commits once, and only then answers each caller. So the
    IOLoop never blocks on the database, and many sessions' events share a commit.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], window: float, batch: int = 500) -> None:
        self._connect = connect
        self.window = window
        self.batch = batch
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

    async def submit(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run `operation(connection)` in a transaction; returns once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((operation, future, loop))
        return await future

    async def stop(self) -> None:
        """Commit what is queued, then close the connection and end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

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
        outcomes: list[tuple[bool, Any]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for operation, _, _ in work:
                connection.execute("SAVEPOINT operation")
                try:
                    outcomes.append((True, operation(connection)))
                except Exception as exc:
                    connection.execute("ROLLBACK TO operation")
                    outcomes.append((False, exc))
                connection.execute("RELEASE operation")
            connection.execute("COMMIT")
            self.commits += 1
            self.last_error = None
        except sqlite3.Error as exc:
            # The commit itself failed (read-only file, disk full, I/O error): nothing was kept.
            log.error("database commit of %d writes failed: %s", len(work), exc)
            self.last_error = str(exc)
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(work)
        for (_, future, loop), (ok, value) in zip(work, outcomes, strict=True):
            loop.call_soon_threadsafe(_settle, future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller gave up waiting
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
