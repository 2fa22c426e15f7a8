"""Transactions on a connection a long-lived writer keeps, begun and ended on the driver.

A unit of work through `Database.transaction()` costs about 0.25 ms of CPU on PostgreSQL
before it runs a statement of its own: the ORM session and its transaction, the pool's
check-out and check-in, and BEGIN and COMMIT through SQLAlchemy's greenlet bridge. For a
writer that commits hundreds of small transactions a second one after another (a group
commit's batches: risk's decisions), that was a fifth of a decision's CPU when requests
came one at a time. `HeldConnections.transaction()` keeps the writer's connection out of
the pool, sends BEGIN and COMMIT on asyncpg itself, and hands out a session that is
never begun unless something asks it for ORM work: about 0.1 ms in all (measured:
docs/decisions.md).

The session is bound to the held connection in autocommit, so whatever goes through it
(an ORM insert, an outbox event, a rule set read) runs inside the BEGIN sent here and
commits or rolls back with it; statements through `kernel.reads.in_transaction` go
straight to the driver. A connection whose ROLLBACK fails, or whose work was cancelled
mid-statement, is closed rather than used again.

PostgreSQL only: SQLite's writer is one connection per process, which a held connection
would take from every other transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from paymesh.kernel.db import Database
from paymesh.kernel.reads import begun_on_driver

log = structlog.get_logger("paymesh.kernel.held_connection")


@dataclass
class _Held:
    connection: AsyncConnection
    driver: asyncpg.Connection


class HeldConnections:
    """Connections kept by a writer (one per batch in flight), opened when first needed."""

    def __init__(self, database: Database) -> None:
        if not database.is_postgres:
            raise ValueError("held connections are for PostgreSQL")
        self.database = database
        self._idle: list[_Held] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends, rolls back when it raises."""
        held = self._idle.pop() if self._idle else await self._open()
        session = AsyncSession(bind=held.connection, expire_on_commit=False)
        reusable = False
        try:
            await held.driver.execute("BEGIN")
            begun_on_driver(session, held.driver, self.database.engine.dialect)
            try:
                yield session
                if session.in_transaction():
                    await session.commit()  # flushes ORM work; the COMMIT is the driver's
            except Exception:
                reusable = await _rolled_back(held.driver)
                raise
            await held.driver.execute("COMMIT")
            reusable = True
        finally:
            if session.in_transaction() or len(session.identity_map) > 0:
                with contextlib.suppress(Exception):
                    await session.close()  # only a session that did ORM work holds any
            if reusable:
                self._idle.append(held)
            else:
                await _discard(held)
        self.database.after_commit(session)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for held in idle:
            await _discard(held)

    async def _open(self) -> _Held:
        connection = await self.database.engine.connect()
        try:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            raw = await connection.get_raw_connection()
            driver = cast(asyncpg.Connection, raw.driver_connection)
        except BaseException:
            await connection.close()
            raise
        return _Held(connection, driver)


async def _rolled_back(driver: asyncpg.Connection) -> bool:
    """ROLLBACK after a failure; whether the connection may serve another transaction."""
    try:
        await driver.execute("ROLLBACK")
    except Exception:
        log.warning("held_connection_rollback_failed", exc_info=True)
        return False
    return True


async def _discard(held: _Held) -> None:
    with contextlib.suppress(Exception):
        await held.connection.invalidate()
    with contextlib.suppress(Exception):
        await held.connection.close()
