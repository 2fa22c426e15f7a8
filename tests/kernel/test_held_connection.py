"""Transactions on a writer's held connection (kernel/held_connection.py), on PostgreSQL:
what goes through the driver and what goes through the session commit or roll back
together; a dead or cancelled connection is replaced; advisory locks are remembered for
one transaction only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text

from paymesh.kernel.db import Database, lock_all_until_commit, locks_not_held, mark_for_commit
from paymesh.kernel.held_connection import HeldConnections
from paymesh.kernel.reads import Query, in_transaction
from tests.kernel.support import backend_pid, database_with

pytestmark = pytest.mark.postgres_only

metadata = MetaData()
probes = Table(
    "held_probe",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("position", Integer, nullable=False),
)
INSERT = Query(probes.insert())
COUNT = Query(select(func.count().label("n")).select_from(probes))


@pytest.fixture
async def database(make_platform: Callable[..., Any]) -> Database:
    return await database_with(make_platform, metadata)


@pytest.fixture
async def held(database: Database) -> Any:
    connections = HeldConnections(database)
    yield connections
    await connections.close()


async def count(database: Database) -> int:
    row = await database.reads.one(COUNT)
    assert row is not None
    return int(row["n"])


async def backend_of(held: HeldConnections) -> int:
    async with held.transaction() as session:
        return await backend_pid(session)


class Failed(Exception):
    pass


class TestCommit:
    async def test_driver_and_session_statements_commit_together(
        self, database: Database, held: HeldConnections
    ) -> None:
        async with held.transaction() as session:
            await in_transaction(session, INSERT, id="driver", position=1)
            await session.execute(probes.insert().values(id="session", position=2))
            # Each sees the other's write: one transaction on one connection.
            seen = await session.execute(select(func.count()).select_from(probes))
            assert seen.scalar() == 2
            assert await count(database) == 0  # nothing visible outside before COMMIT

        assert await count(database) == 2

    async def test_session_work_in_transaction_after_transaction(
        self, database: Database, held: HeldConnections
    ) -> None:
        # Each transaction's session begins its own ORM transaction on the same connection.
        for position in range(3):
            async with held.transaction() as session:
                await session.execute(probes.insert().values(id=f"s{position}", position=position))
                await in_transaction(session, INSERT, id=f"d{position}", position=position)
        with pytest.raises(Failed):
            async with held.transaction() as session:
                await session.execute(probes.insert().values(id="rolled", position=9))
                raise Failed
        async with held.transaction() as session:
            await session.execute(probes.insert().values(id="last", position=10))

        assert await count(database) == 7

    async def test_the_connection_is_kept_for_the_next_transaction(
        self, held: HeldConnections
    ) -> None:
        assert await backend_of(held) == await backend_of(held)

    async def test_commit_hooks_run_after_commit_only(
        self, database: Database, held: HeldConnections
    ) -> None:
        woken: list[str] = []
        database.wake_on_commit("probe_mark", lambda: woken.append("woken"))

        with pytest.raises(Failed):
            async with held.transaction() as session:
                mark_for_commit(session, "probe_mark")
                raise Failed
        assert woken == []

        async with held.transaction() as session:
            mark_for_commit(session, "probe_mark")
            assert woken == []
        assert woken == ["woken"]


class TestRollback:
    async def test_a_failure_rolls_back_both_paths_and_keeps_the_connection(
        self, database: Database, held: HeldConnections
    ) -> None:
        before = await backend_of(held)
        with pytest.raises(Failed):
            async with held.transaction() as session:
                await in_transaction(session, INSERT, id="driver", position=1)
                await session.execute(probes.insert().values(id="session", position=2))
                raise Failed

        assert await count(database) == 0
        assert await backend_of(held) == before

    async def test_a_refused_statement_rolls_back_and_the_next_transaction_works(
        self, database: Database, held: HeldConnections
    ) -> None:
        with pytest.raises(Exception, match="duplicate key"):
            async with held.transaction() as session:
                await in_transaction(session, INSERT, id="twice", position=1)
                await in_transaction(session, INSERT, id="twice", position=2)

        async with held.transaction() as session:
            await in_transaction(session, INSERT, id="after", position=3)
        assert await count(database) == 1


class TestBrokenConnections:
    async def test_a_connection_killed_between_transactions_is_replaced(
        self, database: Database, held: HeldConnections
    ) -> None:
        victim = await backend_of(held)
        async with database.engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
        await asyncio.sleep(0.1)

        with pytest.raises(Exception):  # noqa: B017  # the driver's "connection closed"
            async with held.transaction() as session:
                await in_transaction(session, INSERT, id="lost", position=1)

        async with held.transaction() as session:
            await in_transaction(session, INSERT, id="kept", position=2)
        assert await count(database) == 1
        assert await backend_of(held) != victim

    async def test_work_cancelled_mid_statement_leaves_no_trace_and_a_new_connection(
        self, database: Database, held: HeldConnections
    ) -> None:
        before = await backend_of(held)

        async def slow() -> None:
            async with held.transaction() as session:
                await in_transaction(session, INSERT, id="cancelled", position=1)
                await session.execute(text("SELECT pg_sleep(5)"))

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert await count(database) == 0
        assert await backend_of(held) != before


class TestLocks:
    async def test_locks_are_remembered_for_one_transaction_only(
        self, held: HeldConnections
    ) -> None:
        async with held.transaction() as session:
            assert locks_not_held(session, "probe", ["a"]) != []
            await lock_all_until_commit(session, "probe", ["a"])
            assert locks_not_held(session, "probe", ["a"]) == []

        async with held.transaction() as session:
            # A new transaction holds nothing yet, whatever the last one took.
            assert locks_not_held(session, "probe", ["a"]) != []

    async def test_a_lock_taken_is_held_until_commit(
        self, database: Database, held: HeldConnections
    ) -> None:
        other = HeldConnections(database)
        order: list[str] = []
        try:
            async with held.transaction() as session:
                await lock_all_until_commit(session, "probe", ["shared"])

                async def contender() -> None:
                    async with other.transaction() as second:
                        await lock_all_until_commit(second, "probe", ["shared"])
                        order.append("second locked")

                waiting = asyncio.create_task(contender())
                await asyncio.sleep(0.3)
                order.append("first commits")
            await asyncio.wait_for(waiting, timeout=10)
        finally:
            await other.close()

        assert order == ["first commits", "second locked"]


def test_sqlite_is_refused() -> None:
    class SqliteDatabase:
        is_postgres = False

    with pytest.raises(ValueError, match="PostgreSQL"):
        HeldConnections(SqliteDatabase())  # type: ignore[arg-type]
