"""The embedded SQLite driver: statements on the loop's thread, WAL checkpoints off it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from paymesh.kernel import sqlite_driver
from paymesh.kernel.db import Database
from paymesh.kernel.sqlite_driver import WalCheckpoints


@pytest.fixture
async def database(tmp_path: Path) -> Database:
    database = Database("probe", make_url(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"), None)
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, payload TEXT)"))
    yield database  # type: ignore[misc]
    await database.dispose()


def thread_probe(connection: sqlite3.Connection) -> None:
    connection.create_function("thread_ident", 0, threading.get_ident)


class TestInlineConnection:
    async def test_reads_and_writes_run_on_the_loops_thread(self, database: Database) -> None:
        threads_before = threading.active_count()
        seen = set()
        for read_only in (True, False):
            async with database.transaction(read_only=read_only) as session:
                raw = await session.connection()
                driver = await raw.get_raw_connection()
                thread_probe(driver.driver_connection._conn)  # type: ignore[union-attr]
                seen.add((await session.execute(text("SELECT thread_ident()"))).scalar_one())

        assert seen == {threading.get_ident()}
        assert threading.active_count() == threads_before  # no worker thread per connection

    async def test_an_error_surfaces_as_the_databases_error(self, database: Database) -> None:
        with pytest.raises(Exception, match="no such table"):
            async with database.transaction() as session:
                await session.execute(text("SELECT * FROM missing"))
        async with database.transaction(read_only=True) as session:  # the pool recovered
            assert (await session.execute(text("SELECT count(*) FROM probe"))).scalar_one() == 0


class TestWalCheckpoints:
    async def test_the_writer_never_checkpoints_on_commit(self, database: Database) -> None:
        async with database.transaction() as session:
            value = (await session.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
        assert value == 0

    async def test_a_grown_wal_is_checkpointed_on_a_thread(
        self, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        checkpoints = database._checkpoints
        assert isinstance(checkpoints, WalCheckpoints)
        checkpoints.threshold_bytes = 64 * 1024
        threads = []
        original = checkpoints._checkpoint

        def recording() -> None:
            threads.append(threading.get_ident())
            original()

        monkeypatch.setattr(checkpoints, "_checkpoint", recording)
        for index in range(200):
            async with database.transaction() as session:
                await session.execute(
                    text("INSERT INTO probe (id, payload) VALUES (:id, :payload)"),
                    {"id": index, "payload": "x" * 1000},
                )
        await checkpoints.wait()

        assert threads and threading.get_ident() not in threads
        # Everything the WAL holds has reached the database file.
        with sqlite3.connect(tmp_path / "probe.db") as check:
            busy, logged, checkpointed = check.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and logged == checkpointed

    async def test_checkpoints_share_one_connection_closed_with_the_database(
        self, tmp_path: Path
    ) -> None:
        database = Database("probe", make_url(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"), None)
        checkpoints = database._checkpoints
        assert checkpoints is not None
        async with database.transaction() as session:
            await session.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY)"))
        await checkpoints.checkpoint()
        kept = checkpoints._connection
        assert kept is not None
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO probe (id) VALUES (1)"))
        await checkpoints.checkpoint()
        assert checkpoints._connection is kept  # not opened again
        await database.dispose()
        assert checkpoints._connection is None
        with pytest.raises(sqlite3.ProgrammingError):  # closed
            kept.execute("SELECT 1")

    async def test_a_small_wal_is_left_alone(self, database: Database) -> None:
        checkpoints = database._checkpoints
        assert checkpoints is not None
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO probe (id, payload) VALUES (1, 'x')"))
        await asyncio.sleep(0)
        assert checkpoints._running is None

    async def test_a_restarted_wal_is_cut_back_to_the_limit_and_no_further(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        limit = 256 * 1024
        monkeypatch.setattr(sqlite_driver, "WAL_CHECKPOINT_BYTES", 64 * 1024)
        monkeypatch.setattr(sqlite_driver, "WAL_SIZE_LIMIT_BYTES", limit)
        path = tmp_path / "small.db"
        wal = path.parent / "small.db-wal"
        database = Database("probe", make_url(f"sqlite+aiosqlite:///{path}"), None)
        checkpoints = database._checkpoints
        assert checkpoints is not None

        async def write(first: int, rows: int) -> None:
            async with database.transaction() as session:
                for index in range(first, first + rows):
                    await session.execute(
                        text("INSERT INTO probe (id, p) VALUES (:id, :p)"),
                        {"id": index, "p": "x" * 4000},
                    )

        async def restart_with(first: int) -> int:
            """A complete checkpoint, then a commit: the writer restarts the WAL."""
            await checkpoints.wait()
            await checkpoints.checkpoint()
            await write(first, 1)
            await checkpoints.wait()
            return wal.stat().st_size

        try:
            async with database.transaction() as session:
                await session.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, p TEXT)"))
            await write(0, 150)  # one transaction: ~600 KB of WAL, past the limit
            assert wal.stat().st_size > limit
            assert await restart_with(1000) == limit  # cut back to the limit
            await write(2000, 30)  # ~120 KB: past the threshold, under the limit
            # Restarted again, and written over from its start: not cut below the limit
            # (no truncation, so no discard, on the loop's thread).
            assert await restart_with(3000) == limit
        finally:
            await database.dispose()
