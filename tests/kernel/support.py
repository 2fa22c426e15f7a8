"""Helpers the kernel tests share: polling with a deadline, reading the sample's tables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import Database
from paymesh.kernel.reads import Query, in_transaction
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.platform import Platform
from tests.kernel.sample.app import effects, notes

T = TypeVar("T")

NOTE = {"text": "hello", "amount": 1250, "currency": "USD"}

_BACKEND_PID = Query(select(func.pg_backend_pid().label("pid")))


async def backend_pid(session: AsyncSession) -> int:
    """PostgreSQL: the server process of the connection the session's transaction runs on."""
    return int((await in_transaction(session, _BACKEND_PID))[0]["pid"])


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout_seconds: float = 10.0,
    interval_seconds: float = 0.01,
) -> T:
    """Poll `probe()` until `accept(value)`; fail with the last value at the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_seconds}s; last: {value!r}")
        await asyncio.sleep(interval_seconds)


def runtime_of(platform: Platform) -> ServiceRuntime:
    return platform.runtimes["sample"]


async def effect_count(platform: Platform, name: str) -> int:
    """How many times the effect `name` happened (0 when never)."""
    async with runtime_of(platform).database.transaction() as session:
        value = await session.scalar(select(effects.c.count).where(effects.c.name == name))
    return int(value or 0)


async def effects_like(platform: Platform, prefix: str) -> dict[str, int]:
    async with runtime_of(platform).database.transaction() as session:
        rows = await session.execute(
            select(effects.c.name, effects.c.count).where(effects.c.name.like(f"{prefix}%"))
        )
        return {row.name: row.count for row in rows}


async def note_count(platform: Platform) -> int:
    async with runtime_of(platform).database.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(notes)) or 0)


async def table_rows(platform: Platform, table_name: str) -> list[dict[str, Any]]:
    runtime = runtime_of(platform)
    table = runtime.tables.metadata.tables[table_name]
    async with runtime.database.transaction() as session:
        rows = await session.execute(select(table))
        return [dict(row._mapping) for row in rows]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def database_with(make_platform: Callable[..., Any], metadata: MetaData) -> Database:
    """A migrated service database (the ledger's, workers off) with `metadata`'s probe
    tables created in it: for tests of the kernel's database helpers."""
    platform: Platform = await make_platform(["ledger"], run_workers=False)
    database: Database = platform.runtimes["ledger"].database
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    return database
