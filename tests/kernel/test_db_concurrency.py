"""Reads and writes side by side, with real concurrency: a read never waits for a writer,
a writer never waits for readers nor starves under a stream of them, writers of one process
take turns in arrival order, and on SQLite a read transaction cannot write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from paymesh.kernel.db import Database
from paymesh.platform import Platform

pytestmark = pytest.mark.serial


@pytest.fixture
async def database(make_platform: Callable[..., Any]) -> Database:
    platform: Platform = await make_platform(["ledger"], run_workers=False)
    database = platform.runtimes["ledger"].database
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, n INTEGER)"))
        await session.execute(text("INSERT INTO probe (id, n) VALUES (1, 0)"))
    return database


async def read_n(database: Database) -> int:
    async with database.transaction(read_only=True) as session:
        return int((await session.execute(text("SELECT n FROM probe WHERE id = 1"))).scalar_one())


async def increment(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(text("UPDATE probe SET n = n + 1 WHERE id = 1"))


class TestReadsAndWrites:
    async def test_a_read_does_not_wait_for_an_open_write(self, database: Database) -> None:
        async with database.transaction() as writer:
            await writer.execute(text("UPDATE probe SET n = 41 WHERE id = 1"))
            # The writer holds its lock (and on SQLite the only writer connection).
            started = time.monotonic()
            values = await asyncio.wait_for(
                asyncio.gather(*(read_n(database) for _ in range(8))), timeout=2
            )
            assert time.monotonic() - started < 2
            assert values == [0] * 8  # the last commit, not the writer's uncommitted row
        assert await read_n(database) == 41

    async def test_a_write_does_not_wait_for_an_open_read(self, database: Database) -> None:
        async with database.transaction(read_only=True) as reader:
            assert (await reader.execute(text("SELECT n FROM probe"))).scalar_one() == 0
            await asyncio.wait_for(increment(database), timeout=2)
        assert await read_n(database) == 1

    async def test_writers_do_not_starve_under_a_stream_of_reads(self, database: Database) -> None:
        stop = asyncio.Event()
        reads = 0

        async def keep_reading() -> None:
            nonlocal reads
            while not stop.is_set():
                await read_n(database)
                reads += 1

        readers = [asyncio.create_task(keep_reading()) for _ in range(6)]
        try:
            waits = []
            for _ in range(20):
                started = time.monotonic()
                await asyncio.wait_for(increment(database), timeout=5)
                waits.append(time.monotonic() - started)
        finally:
            stop.set()
            await asyncio.gather(*readers)
        assert await read_n(database) == 20
        assert reads > 20
        assert max(waits) < 2, waits

    async def test_writers_take_turns_without_losing_an_update(self, database: Database) -> None:
        await asyncio.wait_for(asyncio.gather(*(increment(database) for _ in range(40))), 20)
        assert await read_n(database) == 40


class TestSqliteWriterLine:
    async def test_writers_are_served_in_arrival_order(self, database: Database) -> None:
        if not database.is_sqlite:
            pytest.skip("the in-process writer line is SQLite's (PostgreSQL locks rows)")
        order: list[int] = []

        async def write(index: int) -> None:
            async with database.transaction() as session:
                order.append(index)
                await session.execute(text("UPDATE probe SET n = n + 1 WHERE id = 1"))

        async with database.transaction() as blocker:
            await blocker.execute(text("UPDATE probe SET n = n + 1 WHERE id = 1"))
            tasks = []
            for index in range(10):
                tasks.append(asyncio.create_task(write(index)))
                await asyncio.sleep(0.01)  # arrive one after another
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert order == list(range(10))

    async def test_a_read_transaction_cannot_write(self, database: Database) -> None:
        if not database.is_sqlite:
            pytest.skip("query_only guards SQLite's read connections")
        with pytest.raises(OperationalError, match="readonly"):
            async with database.transaction(read_only=True) as session:
                await session.execute(text("UPDATE probe SET n = 99 WHERE id = 1"))
        assert await read_n(database) == 0
