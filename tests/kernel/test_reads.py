"""The direct read path (kernel/reads.py): a row read on the driver equals the row a session
returns, column types and all; reads never wait for a writer; what it cannot do it refuses."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from paymesh.kernel.db import (
    BIGINT,
    JSON_TYPE,
    Database,
    UTCDateTime,
    advisory_lock_key,
    lock_until_commit,
)
from paymesh.kernel.reads import Query, ReadConnections, in_transaction
from tests.kernel.support import database_with

metadata = MetaData()
probes = Table(
    "read_probe",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("amount", BIGINT, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("kind", Integer, nullable=False),
    Column("document", JSON_TYPE, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("note", String(64), nullable=True),
)

BY_ID = Query(select(probes).where(probes.c.id == bindparam("probe_id")))
ACTIVE_OF_KIND = Query(
    select(probes.c.id, probes.c.amount)
    .where(probes.c.kind == bindparam("kind"), probes.c.active.is_(True))
    .order_by(probes.c.id)
)
# A value written into the statement itself (bound by SQLAlchemy, not by the caller).
LARGE = Query(select(probes.c.id).where(probes.c.amount > 1_000).order_by(probes.c.id))

CREATED = dt.datetime(2026, 12, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
DOCUMENT = {"nested": {"list": [1, "two", None, True]}, "unicode": "Zoë ✓", "big": 2**60}


@pytest.fixture
async def database(make_platform: Callable[..., Any]) -> Database:
    database = await database_with(make_platform, metadata)
    async with database.transaction() as session:
        await session.execute(
            probes.insert(),
            [
                {
                    "id": "p1",
                    "amount": 2**62,
                    "active": True,
                    "kind": 1,
                    "document": DOCUMENT,
                    "created_at": CREATED,
                    "note": None,
                },
                {
                    "id": "p2",
                    "amount": 5,
                    "active": False,
                    "kind": 1,
                    "document": [],
                    "created_at": CREATED,
                    "note": "x",
                },
                {
                    "id": "p3",
                    "amount": 7_000,
                    "active": True,
                    "kind": 1,
                    "document": {},
                    "created_at": CREATED,
                    "note": "y",
                },
            ],
        )
    return database


INSERT = Query(probes.insert())
RAISE_AMOUNT = Query(
    probes.update()
    .where(probes.c.id == bindparam("probe_id"))
    .values(amount=probes.c.amount + bindparam("by"))
    .returning(probes.c.amount)
)


def probe(probe_id: str, amount: int = 1) -> dict[str, Any]:
    return {
        "id": probe_id,
        "amount": amount,
        "active": True,
        "kind": 2,
        "document": DOCUMENT,
        "created_at": CREATED,
        "note": None,
    }


class TestInTransaction:
    """`in_transaction`: statements on the unit of work's own connection."""

    async def test_writes_commit_with_the_session_and_are_seen_inside_it(
        self, database: Database
    ) -> None:
        async with database.transaction() as session:
            assert await in_transaction(session, INSERT, **probe("t1")) == []
            # Seen by the session itself, and by the next direct statement, before commit.
            inside = (await session.execute(BY_ID.statement, {"probe_id": "t1"})).one()
            assert inside.document == DOCUMENT
            raised = await in_transaction(session, RAISE_AMOUNT, probe_id="t1", by=41)
            assert raised == [{"amount": 42}]
            # Not seen outside until the commit.
            assert await database.reads.one(BY_ID, probe_id="t1") is None
        row = await database.reads.one(BY_ID, probe_id="t1")
        assert row is not None
        assert (row["amount"], row["document"], row["created_at"]) == (42, DOCUMENT, CREATED)

    async def test_writes_roll_back_with_the_session(self, database: Database) -> None:
        with pytest.raises(RuntimeError, match="after the write"):
            async with database.transaction() as session:
                await in_transaction(session, INSERT, **probe("t2"))
                raise RuntimeError("after the write")
        assert await database.reads.one(BY_ID, probe_id="t2") is None

    async def test_each_transaction_of_a_session_gets_its_own(self, database: Database) -> None:
        # A session committed and used again begins a new transaction on a connection
        # that may be another: the first transaction's connection is never reused.
        async with database.sessions() as session:
            async with session.begin():
                await in_transaction(session, INSERT, **probe("t3"))
            async with session.begin():
                await in_transaction(session, RAISE_AMOUNT, probe_id="t3", by=1)
                await session.rollback()
        row = await database.reads.one(BY_ID, probe_id="t3")
        assert row is not None and row["amount"] == 1

    async def test_a_driver_error_is_sqlalchemys_and_leaves_nothing(
        self, database: Database
    ) -> None:
        with pytest.raises(DBAPIError) as raised:
            async with database.transaction() as session:
                await in_transaction(session, INSERT, **probe("t4"))
                await in_transaction(session, INSERT, **probe("t4"))  # the same key
        assert "t4" not in str(raised.value)  # values are never in the message
        assert await database.reads.one(BY_ID, probe_id="t4") is None


class TestLockUntilCommit:
    """`lock_until_commit` (kernel/db.py): an advisory lock on the transaction's own
    connection, held to its commit, taken once per transaction."""

    @staticmethod
    async def held(url: str, key: int) -> int:
        return await _count(
            url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = $1",
            key,
        )

    async def test_held_until_commit_and_blocks_another_transaction(
        self, database: Database
    ) -> None:
        url = _postgres_url(database)
        key = advisory_lock_key("probe", "one")
        async with database.transaction() as session:
            await lock_until_commit(session, "probe", "one")
            await lock_until_commit(session, "probe", "one")  # held: no second statement
            assert await self.held(url, key) == 1
            other = await asyncpg.connect(url)
            try:
                assert await other.fetchval("SELECT pg_try_advisory_lock($1)", key) is False
            finally:
                await other.close()
        assert await self.held(url, key) == 0

    async def test_taken_again_in_the_sessions_next_transaction(self, database: Database) -> None:
        url = _postgres_url(database)
        key = advisory_lock_key("probe", "two")
        async with database.sessions() as session:
            async with session.begin():
                await lock_until_commit(session, "probe", "two")
            assert await self.held(url, key) == 0
            async with session.begin():
                # Remembered for the first transaction only: this one takes it again.
                await lock_until_commit(session, "probe", "two")
                assert await self.held(url, key) == 1
        assert await self.held(url, key) == 0

    async def test_a_savepoints_lock_is_not_remembered(self, database: Database) -> None:
        url = _postgres_url(database)
        key = advisory_lock_key("probe", "three")
        async with database.transaction() as session:
            savepoint = await session.begin_nested()
            await lock_until_commit(session, "probe", "three")
            await savepoint.rollback()
            assert await self.held(url, key) == 0  # released with the savepoint
            await lock_until_commit(session, "probe", "three")
            assert await self.held(url, key) == 1


class TestDirectReads:
    async def test_a_row_equals_the_sessions(self, database: Database) -> None:
        direct = await database.reads.one(BY_ID, probe_id="p1")
        async with database.transaction(read_only=True) as session:
            through_session = (
                (await session.execute(BY_ID.statement, {"probe_id": "p1"})).one()._asdict()
            )
        assert direct == through_session
        assert direct is not None
        assert direct["amount"] == 2**62
        assert direct["active"] is True
        assert direct["document"] == DOCUMENT
        assert direct["created_at"] == CREATED
        assert direct["created_at"].tzinfo is not None
        assert direct["note"] is None

    async def test_no_row_is_none(self, database: Database) -> None:
        assert await database.reads.one(BY_ID, probe_id="missing") is None
        assert await database.reads.all(ACTIVE_OF_KIND, kind=99) == []

    async def test_several_rows_in_order(self, database: Database) -> None:
        rows = await database.reads.all(ACTIVE_OF_KIND, kind=1)
        assert rows == [{"id": "p1", "amount": 2**62}, {"id": "p3", "amount": 7_000}]
        assert [row["id"] for row in await database.reads.all(LARGE)] == ["p1", "p3"]

    async def test_a_missing_parameter_is_refused(self, database: Database) -> None:
        with pytest.raises(TypeError, match="kind"):
            await database.reads.one(ACTIVE_OF_KIND)
        with pytest.raises(TypeError, match="probe_id"):
            await database.reads.one(BY_ID, probe=1)

    async def test_hostile_values_are_parameters_not_sql(self, database: Database) -> None:
        # (NUL is refused at the edge: ids are validated before any query.)
        for value in ("p1' OR '1'='1", "p1; DROP TABLE read_probe; --", "ü" * 500):
            assert await database.reads.one(BY_ID, probe_id=value) is None
        assert await database.reads.one(BY_ID, probe_id="p1") is not None

    def test_expanding_parameters_are_refused(self, database: Database) -> None:
        statement = select(probes.c.id).where(probes.c.id.in_(bindparam("ids", expanding=True)))
        with pytest.raises(ValueError, match="expanding"):
            Query(statement).compiled(database.read_engine.dialect)

    async def test_sees_commits_and_never_waits_for_an_open_write(self, database: Database) -> None:
        async with database.transaction() as writer:
            await writer.execute(text("UPDATE read_probe SET amount = 1 WHERE id = 'p3'"))
            # The writer holds its lock (on SQLite, the only writer connection).
            found = await asyncio.wait_for(
                asyncio.gather(*(database.reads.one(BY_ID, probe_id="p3") for _ in range(8))),
                timeout=2,
            )
            assert {row["amount"] for row in found if row} == {7_000}  # the last commit
        after = await database.reads.one(BY_ID, probe_id="p3")
        assert after is not None and after["amount"] == 1

    async def test_reopens_after_close(self, database: Database) -> None:
        assert await database.reads.one(BY_ID, probe_id="p2") is not None
        await database.reads.close()
        row = await database.reads.one(BY_ID, probe_id="p2")
        assert row is not None and row["document"] == []


def _postgres_url(database: Database) -> str:
    if database.reads.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's read connections")
    return database.reads.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _count(url: str, sql: str, *arguments: Any) -> int:
    """`sql`'s count, asked on a connection of its own."""
    probe = await asyncpg.connect(url)
    try:
        count: int = await probe.fetchval(sql, *arguments)
        return count
    finally:
        await probe.close()


async def _backends(url: str, application_name: str) -> int:
    return await _count(
        url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
    )


class TestReadConnections:
    """The PostgreSQL connections behind the direct read path (`ReadConnections`)."""

    @staticmethod
    def connections(url: str, size: int, name: str, **options: Any) -> ReadConnections:
        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(url, server_settings={"application_name": name})

        return ReadConnections(connect, size, **options)

    async def test_never_more_than_its_size_however_many_ask(self, database: Database) -> None:
        url = _postgres_url(database)
        connections = self.connections(url, 3, "reads_size")
        peak = 0

        async def read(index: int) -> int:
            nonlocal peak
            connection = await connections.borrow()
            peak = max(peak, connections.open_count)
            try:
                await connection.execute("SELECT pg_sleep(0.02)")
                value: int = await connection.fetchval("SELECT $1::int", index)
                return value
            finally:
                connections.give_back(connection)

        try:
            results = await asyncio.wait_for(asyncio.gather(*(read(i) for i in range(30))), 10)
            assert results == list(range(30))
            assert peak == 3 and connections.open_count == 3
            assert await _backends(url, "reads_size") == 3
        finally:
            await connections.close()
        assert connections.open_count == 0

    async def test_a_read_cut_short_closes_its_connection(self, database: Database) -> None:
        url = _postgres_url(database)
        connections = self.connections(url, 1, "reads_cut")
        try:
            first = await connections.borrow()
            connections.give_back(first)

            async def slow() -> None:
                await connections.fetch("SELECT pg_sleep(5)", [])

            with pytest.raises(TimeoutError):
                await asyncio.wait_for(slow(), 0.2)
            assert connections.open_count == 0
            # The one slot is free again: the next read gets a fresh connection, at once.
            again = await asyncio.wait_for(connections.borrow(), 2)
            assert again is not first and await again.fetchval("SELECT 1") == 1
            connections.give_back(again)
        finally:
            await connections.close()

    async def test_a_waiter_gets_the_slot_of_a_discarded_connection(
        self, database: Database
    ) -> None:
        url = _postgres_url(database)
        connections = self.connections(url, 1, "reads_slot")
        try:
            held = await connections.borrow()
            waiting = asyncio.create_task(connections.borrow())
            await asyncio.sleep(0.05)
            assert not waiting.done()
            connections.discard(held)
            fresh = await asyncio.wait_for(waiting, 2)
            assert fresh is not held and await fresh.fetchval("SELECT 2") == 2
            connections.give_back(fresh)
            assert connections.open_count == 1
        finally:
            await connections.close()

    async def test_idle_connections_go_back_to_postgres(self, database: Database) -> None:
        url = _postgres_url(database)
        connections = self.connections(url, 2, "reads_idle", idle_seconds=0.2)
        try:
            one, two = await connections.borrow(), await connections.borrow()
            connections.give_back(one)
            connections.give_back(two)
            assert connections.open_count == 2
            await asyncio.sleep(0.6)
            assert connections.open_count == 0
            assert await _backends(url, "reads_idle") == 0
            again = await connections.borrow()  # and they open again when needed
            assert await again.fetchval("SELECT 3") == 3
            connections.give_back(again)
        finally:
            await connections.close()

    async def test_direct_reads_survive_refusals_and_killed_connections(
        self, database: Database
    ) -> None:
        _postgres_url(database)
        reads = database.reads
        assert await reads.one(BY_ID, probe_id="p1") is not None
        connections = reads._connections
        assert connections is not None and connections.open_count == 1
        # A statement the server refuses leaves the connection lent again.
        with pytest.raises(asyncpg.PostgresError):
            await reads.all(Query(select(text("1/0"))))
        assert connections.open_count == 1
        assert await reads.one(BY_ID, probe_id="p2") is not None  # on that connection
        # A connection PostgreSQL dropped is closed here, and the next read opens another.
        async with database.engine.connect() as admin:
            killed = await admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend' AND state = 'idle'"
                    " AND query LIKE '%read_probe%'"
                )
            )
            assert [row[0] for row in killed] == [True]
        await asyncio.sleep(0.1)
        for _ in range(2):
            try:
                row = await reads.one(BY_ID, probe_id="p1")
            except (asyncpg.InterfaceError, OSError, asyncpg.PostgresError):
                continue  # the killed connection's own read fails, once
            assert row is not None and row["id"] == "p1"
            break
        else:
            pytest.fail("no read succeeded after the connection was killed")
        assert connections.open_count == 1
