"""The direct read path (kernel/reads.py): a row read on the driver equals the row a session
returns, column types and all; reads never wait for a writer; what it cannot do it refuses."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

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

from paymesh.kernel.db import BIGINT, JSON_TYPE, Database, UTCDateTime
from paymesh.kernel.reads import Query
from paymesh.platform import Platform

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
    platform: Platform = await make_platform(["ledger"], run_workers=False)
    database = platform.runtimes["ledger"].database
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
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
