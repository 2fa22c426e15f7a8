"""SQLite statements run on the event loop's own thread, not on a thread per connection.

aiosqlite gives every connection a worker thread and hands each call (BEGIN, execute,
fetch, commit, the pool's reset) to it through a queue, then back through the loop: a
dozen thread hops for one read. Under load each hop also waits for the GIL, which the
loop holds while it serves other requests (up to the 5 ms switch interval), so a
one-row read cost ~3 ms of CPU and tens of milliseconds of latency, where the statement
itself takes ~20 µs.

`InlineConnection` keeps aiosqlite's interface (SQLAlchemy's `sqlite+aiosqlite` dialect
drives it unchanged) but calls sqlite3 directly. That blocks the loop for the duration
of each statement: microseconds for the point reads and small writes services make,
longer for a report over many rows. The trade is right for the embedded shape, which is
one process with a modest load; a deployment that needs long reports beside low latency
runs on PostgreSQL. The writer's connection never checkpoints the WAL itself (the one
slow, fsync-bound step of a commit): `WalCheckpoints` does that on a thread.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiosqlite
import structlog

log = structlog.get_logger("paymesh.db")

WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024
"""A WAL file larger than this is checkpointed after a commit (SQLite's own automatic
checkpoint starts at ~4 MB, 1000 pages)."""
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
"""A writer restarting the WAL after a complete checkpoint cuts the file back to this size
(`PRAGMA journal_size_limit`); a smaller file is left as it is and written over. The cut
is made by the writer, on the event loop's thread, and costs a few ms where the file
system discards freed blocks at once (ext4 mounted with `discard`: measured here as
waits of up to 3.4 ms in `blkdev_issue_discard`, a few times a second under risk's
one-connection load, when the limit equalled the 4 MB threshold). With the limit well
above the threshold a busy database's WAL keeps its size between checkpoints and is
seldom cut."""


def connection_pragmas(*, query_only: bool = False) -> tuple[str, ...]:
    """Every connection's settings; `query_only` for a connection that only reads."""
    pragmas: tuple[str, ...] = (
        "PRAGMA journal_mode=WAL",
        "PRAGMA busy_timeout=30000",
        "PRAGMA foreign_keys=ON",
        "PRAGMA synchronous=NORMAL",
        # Statements run on the event loop: a commit must not stop to checkpoint the WAL
        # (fsyncs); `WalCheckpoints` does it on a thread.
        "PRAGMA wal_autocheckpoint=0",
        # Read when a connection opens (not at import), so the limit can be tuned.
        f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}",
    )
    if query_only:
        # A read transaction that tried to write would have to upgrade its lock, which
        # fails under contention: make it fail always, and loudly.
        pragmas += ("PRAGMA query_only=ON",)
    return pragmas


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run at once on the caller's thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        # SQLAlchemy's adapter puts some calls (setting isolation_level) on aiosqlite's
        # queue directly: run those at once too.
        self._tx = _InlineQueue()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Any:  # no worker thread to start
        return self._connect().__await__()

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    def stop(self) -> None:  # aiosqlite's __del__ calls it
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()


def sqlite_connection(adapted: Any) -> sqlite3.Connection:
    """The sqlite3 connection under SQLAlchemy's adapter of an `InlineConnection`."""
    inline = adapted.driver_connection
    if not isinstance(inline, InlineConnection):
        raise TypeError("not a connection of the inline SQLite driver")
    return inline._conn


class _InlineQueue:
    """Stands in for aiosqlite's queue to its worker thread: runs each call as it arrives."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as error:
            if future is None:
                raise
            future.set_exception(error)
        else:
            if future is not None:
                future.set_result(result)


def inline_creator(path: str) -> Callable[[], Awaitable[InlineConnection]]:
    """An `async_creator` for `create_async_engine`: connections to the file at `path`."""

    async def create() -> InlineConnection:
        # check_same_thread off: the pool may close a connection from another thread at
        # interpreter exit; every statement still runs on the loop's thread.
        connector = partial(sqlite3.connect, path, check_same_thread=False)
        connection: InlineConnection = await InlineConnection(connector)
        return connection

    return create


class WalCheckpoints:
    """Checkpoints a database's WAL on a worker thread once it has grown past
    `threshold_bytes`, so the WAL stays bounded while no commit on the loop pays for the
    fsyncs. The file only shrinks when a writer restarts the WAL after a complete
    checkpoint, and then only down to `WAL_SIZE_LIMIT_BYTES`: once it has grown past the
    threshold, a checkpoint follows every commit that finds none running (each one copies
    only the frames written since the last)."""

    def __init__(self, path: str, threshold_bytes: int | None = None) -> None:
        self.path = path
        self.wal_path = f"{path}-wal"
        self.threshold_bytes = WAL_CHECKPOINT_BYTES if threshold_bytes is None else threshold_bytes
        self._running: asyncio.Task[None] | None = None
        self._connection: sqlite3.Connection | None = None

    def after_commit(self) -> None:
        if self._running is not None and not self._running.done():
            return
        try:
            size = os.stat(self.wal_path).st_size
        except OSError:
            return
        if size > self.threshold_bytes:
            self._running = asyncio.get_running_loop().create_task(self.checkpoint())

    async def checkpoint(self) -> None:
        """Move the WAL's committed pages into the database file (PASSIVE: never waits
        for a reader or the writer), then let the next writer start the WAL again."""
        try:
            await asyncio.to_thread(self._checkpoint)
        except sqlite3.Error as error:  # a busy checkpoint is retried after a later commit
            log.warning("sqlite_checkpoint_failed", error=error.__class__.__name__)

    def _checkpoint(self) -> None:
        # One connection kept for the checkpoints (one at a time, on whichever worker
        # thread): under steady writes they run back to back, and opening and closing a
        # connection for each cost more CPU than the checkpoint's own work.
        connection = self._connection
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
            self._connection = connection
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            self._connection = None
            connection.close()
            raise

    async def close(self) -> None:
        """Wait for a running checkpoint, then close the checkpoints' connection."""
        await self.wait()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def wait(self) -> None:
        if self._running is not None:
            await asyncio.shield(self._running)
