"""Reads straight on the database driver: the one-statement lookups every request makes.

A read through an `AsyncSession` crosses the ORM session, the Core connection and result
layers and a greenlet hop for each step (about 0.3 ms of CPU for one row by primary key,
most of a request's cost); the same statement on the driver costs a few microseconds on
SQLite and one asyncpg round trip on PostgreSQL. `Query` keeps SQLAlchemy as the way a
statement is written: it is compiled once per dialect, its parameters go through the
column types' bind processors and its values through their result processors, so a row
read here equals the row a session returns (dates, JSON, enums alike).

Each statement runs on its own: SQLite in autocommit (the statement is its own read
transaction, never behind the writer), PostgreSQL in autocommit (READ COMMITTED gives a
statement its own snapshot either way). A read that must see the request's own
uncommitted writes, or several statements that must agree, belongs in the unit of work.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy import URL
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from paymesh.kernel import sqlite_driver

Row = dict[str, Any]
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...]
    """The bind names in the order the driver takes them."""
    defaults: Mapping[str, Any]
    """Values bound in the statement itself (`column == 1`)."""
    required: frozenset[str]
    """Parameters the caller must give (`bindparam("name")`)."""
    bind_processors: tuple[Processor, ...]
    keys: tuple[str, ...]
    result_processors: tuple[Processor, ...]
    processed: bool
    """Whether any column has a result processor (most rows need none)."""


class Query:
    """A prebuilt statement, named parameters as `bindparam("name")`: a SELECT for
    `DirectReads`; any statement (an INSERT or upsert too) for `in_transaction`. Built once
    at import time, as the repositories' other prebuilt statements are."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self.statement, dialect)
        return found


def _compile(statement: ClauseElement, dialect: Dialect) -> _Compiled:
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    if any(bind.expanding for bind in compiled.binds.values()):
        raise ValueError("expanding IN parameters are not supported here: use = ANY(array)")
    positions = tuple(compiled.positiontup or ())
    required = frozenset(
        name for bind, name in compiled.bind_names.items() if bind.required and name in positions
    )
    defaults = {
        name: value
        for name, value in compiled.construct_params(_check=False).items()
        if value is not None
    }
    bind_processors = compiled._bind_processors
    result_processors = tuple(
        column.type._cached_result_processor(dialect, None) for column in compiled._result_columns
    )
    return _Compiled(
        sql=compiled.string,
        positions=positions,
        defaults=defaults,
        required=required,
        bind_processors=tuple(bind_processors.get(name) for name in positions),  # type: ignore[misc]
        keys=tuple(column.keyname for column in compiled._result_columns),
        result_processors=result_processors,
        processed=any(processor is not None for processor in result_processors),
    )


def _arguments(compiled: _Compiled, parameters: Mapping[str, Any]) -> list[Any]:
    if not compiled.required <= parameters.keys():
        missing = ", ".join(sorted(compiled.required - parameters.keys()))
        raise TypeError(f"missing query parameters: {missing}")
    arguments = []
    for name, processor in zip(compiled.positions, compiled.bind_processors, strict=True):
        value = parameters[name] if name in parameters else compiled.defaults.get(name)
        arguments.append(value if processor is None or value is None else processor(value))
    return arguments


def _rows(compiled: _Compiled, records: Sequence[Any]) -> list[Row]:
    keys = compiled.keys
    if not compiled.processed:
        return [dict(zip(keys, record, strict=True)) for record in records]
    processors = compiled.result_processors
    return [
        {
            key: value if processor is None else processor(value)
            for key, processor, value in zip(keys, processors, record, strict=True)
        }
        for record in records
    ]


# -- statements in the unit of work ---------------------------------------------------------

_IN_TRANSACTION = "paymesh.in_transaction"


class _SqliteInTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def fetch(self, sql: str, arguments: Sequence[Any]) -> Sequence[Any]:
        cursor = self.connection.execute(sql, arguments)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()


_HELD_TRANSACTION = "paymesh.held_transaction"


def transaction_of(session: AsyncSession) -> object | None:
    """What identifies the session's current transaction, for bookkeeping that lasts until
    it ends (the statements' driver here, the advisory locks taken in kernel/db.py): the
    session's own transaction, or for a transaction begun on the driver
    (`begun_on_driver`) a token of its own, since the session itself may never begin."""
    held = session.info.get(_HELD_TRANSACTION)
    return held if held is not None else session.get_transaction()


def begun_on_driver(
    session: AsyncSession, connection: asyncpg.Connection, dialect: Dialect
) -> None:
    """Say that `session` (new, bound to `connection`'s SQLAlchemy connection in
    autocommit) works inside a transaction the caller began with BEGIN on `connection`:
    `in_transaction` sends its statements there without asking the session for them."""
    token = object()
    session.info[_HELD_TRANSACTION] = token
    session.info[_IN_TRANSACTION] = (token, _AsyncpgInTransaction(connection), dialect)


class _AsyncpgInTransaction:
    def __init__(self, connection: asyncpg.Connection, adapted: Any = None) -> None:
        self.connection = connection
        self.adapted = adapted
        """SQLAlchemy's adapter of the connection, when the session's transaction is
        SQLAlchemy's; None when the caller sent BEGIN on the driver (`begun_on_driver`)."""

    async def fetch(self, sql: str, arguments: Sequence[Any]) -> Sequence[Any]:
        # The adapter sends BEGIN with its first statement, not when the session begins:
        # begin it here if nothing went through the session yet.
        if self.adapted is not None and self.adapted._transaction is None:
            await self.adapted._start_transaction()
        records: Sequence[Any] = await self.connection.fetch(sql, *arguments)
        return records


async def in_transaction(session: AsyncSession, query: Query, **parameters: Any) -> list[Row]:
    """`query` on the connection of the session's transaction (begun here if it was not):
    it sees the transaction's own writes, and what it writes commits or rolls back with the
    transaction. For the few statements of a hot route: through the session each statement
    costs ~0.1 ms of CPU (ORM session, Core connection and result, greenlet hops), here a
    few microseconds on SQLite and one round trip on PostgreSQL; the statement is compiled
    once per dialect and its values pass the column types' processors, as in `DirectReads`.
    A driver error comes out as SQLAlchemy's `DBAPIError`, as it would from the session."""
    transaction = transaction_of(session)
    held = session.info.get(_IN_TRANSACTION)
    if held is None or transaction is None or held[0] is not transaction:
        connection = await session.connection()  # begins the transaction (BEGIN IMMEDIATE)
        raw = await connection.get_raw_connection()
        adapted = raw.dbapi_connection
        driver: _SqliteInTransaction | _AsyncpgInTransaction
        if connection.dialect.name == "sqlite":
            driver = _SqliteInTransaction(sqlite_driver.sqlite_connection(adapted))
        else:
            driver = _AsyncpgInTransaction(cast(asyncpg.Connection, raw.driver_connection), adapted)
        held = (session.get_transaction(), driver, connection.dialect)
        session.info[_IN_TRANSACTION] = held
    _, driver, dialect = held
    compiled = query.compiled(dialect)
    arguments = _arguments(compiled, parameters)
    try:
        records = await driver.fetch(compiled.sql, arguments)
    except (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
        if getattr(error, "detail", None):
            # PostgreSQL's DETAIL repeats the refused values, as kernel/db.py drops it.
            error.detail = None  # type: ignore[union-attr]
        raise DBAPIError(compiled.sql, None, error, hide_parameters=True) from error
    return _rows(compiled, records)


class DirectReads:
    """A service database's direct read path (`Database.reads`)."""

    def __init__(
        self,
        dialect: Dialect,
        url: URL,
        schema: str | None,
        *,
        sqlite_path: str | None = None,
        connections: int = 4,
    ) -> None:
        self.dialect = dialect
        self.url = url
        self.schema = schema
        self.sqlite_path = sqlite_path
        self.connections = connections
        self._sqlite: sqlite3.Connection | None = None
        self._connections: ReadConnections | None = None

    async def one(self, query: Query, **parameters: Any) -> Row | None:
        """The first row, or None."""
        rows = await self.all(query, **parameters)
        return rows[0] if rows else None

    async def all(self, query: Query, **parameters: Any) -> list[Row]:
        compiled = query.compiled(self.dialect)
        arguments = _arguments(compiled, parameters)
        if self.sqlite_path is not None:
            # Runs on the event loop's thread like every SQLite statement here
            # (kernel/sqlite_driver.py): executed and fetched with no await between, so
            # one connection serves every concurrent request.
            cursor = self._sqlite_connection().execute(compiled.sql, arguments)
            try:
                records = cursor.fetchall()
            finally:
                cursor.close()
            return _rows(compiled, records)
        records = await (self._connections or self._open()).fetch(compiled.sql, arguments)
        return _rows(compiled, records)

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            assert self.sqlite_path is not None
            connection = sqlite3.connect(
                self.sqlite_path, isolation_level=None, check_same_thread=False
            )
            for pragma in sqlite_driver.connection_pragmas(query_only=True):
                connection.execute(pragma)
            self._sqlite = connection
        return self._sqlite

    def _open(self) -> ReadConnections:
        if self._connections is None:
            url = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            schema = self.schema or "public"

            async def connect() -> asyncpg.Connection:
                connection = await asyncpg.connect(url, server_settings={"search_path": schema})
                try:
                    await self._init_connection(connection)
                except BaseException:
                    connection.terminate()
                    raise
                return connection

            self._connections = ReadConnections(connect, self.connections)
        return self._connections

    async def _init_connection(self, connection: asyncpg.Connection) -> None:
        # As SQLAlchemy's asyncpg dialect does on connect, so JSON columns decode alike
        # (its JSON types have no result processor: the codec is the decoder).
        loads = getattr(self.dialect, "_json_deserializer", None) or json.loads
        await connection.set_type_codec(
            "json",
            encoder=str.encode,
            decoder=lambda value: loads(value.decode()),
            schema="pg_catalog",
            format="binary",
        )
        await connection.set_type_codec(
            "jsonb",
            encoder=lambda value: b"\x01" + value.encode(),
            decoder=lambda value: loads(value[1:].decode()),
            schema="pg_catalog",
            format="binary",
        )

    async def close(self) -> None:
        connection, self._sqlite = self._sqlite, None
        if connection is not None:
            connection.close()
        connections, self._connections = self._connections, None
        if connections is not None:
            await connections.close()


class ReadConnections:
    """The PostgreSQL connections of a direct read path: at most `size`, opened when
    needed, lent one statement at a time (most recently returned first, so a quiet
    process keeps few warm), closed after `idle_seconds` unused (ten services share
    PostgreSQL's connection limit).

    Not asyncpg's `Pool`: its proxies, holders, per-release reset and timeouts are made
    for connections that callers keep across statements and may leave in any state; here
    each loan is one autocommit statement, and the pool's bookkeeping cost more than the
    statement itself (44 against 20 µs of CPU per read, measured with uvloop). A
    connection that fails other than by the server refusing a statement is closed, not
    lent again."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        size: int,
        *,
        idle_seconds: float = 60.0,
    ) -> None:
        self._connect = connect
        self.size = size
        self.idle_seconds = idle_seconds
        self._idle: list[tuple[asyncpg.Connection, float]] = []
        self._open = 0
        self._waiting: collections.deque[asyncio.Future[asyncpg.Connection | None]] = (
            collections.deque()
        )
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_count(self) -> int:
        return self._open

    async def fetch(self, sql: str, arguments: Sequence[Any]) -> list[asyncpg.Record]:
        """One statement on a lent connection."""
        connection = await self.borrow()
        try:
            records: list[asyncpg.Record] = await connection.fetch(sql, *arguments)
        except asyncpg.PostgresError:
            self.give_back(connection)  # the server refused the statement
            raise
        except BaseException:
            # Cancelled or cut mid-statement: the connection's state is unknown.
            self.discard(connection)
            raise
        self.give_back(connection)
        return records

    async def borrow(self) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise RuntimeError("the read connections are closed")
            while self._idle:
                connection, _ = self._idle.pop()
                if not connection.is_closed():
                    return connection
                self._open -= 1
            if self._open < self.size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake_one(None)  # a waiter may try to connect in our place
                    raise
            waiter: asyncio.Future[asyncpg.Connection | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiting.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                late = waiter.result() if waiter.done() and not waiter.cancelled() else None
                if late is not None:
                    self.give_back(late)  # handed over as we were cancelled
                else:
                    with contextlib.suppress(ValueError):
                        self._waiting.remove(waiter)
                raise
            if handed is not None:
                return handed
            # A slot freed (a connection closed): try again, to open one.

    def give_back(self, connection: asyncpg.Connection) -> None:
        if self._closed or connection.is_closed():
            self.discard(connection)
            return
        if self._wake_one(connection):
            return
        self._idle.append((connection, time.monotonic()))
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().call_later(self.idle_seconds, self._reap)

    def discard(self, connection: asyncpg.Connection) -> None:
        """Close a connection that may be mid-statement; its slot goes to a waiter."""
        connection.terminate()
        self._open -= 1
        self._wake_one(None)

    def _wake_one(self, value: asyncpg.Connection | None) -> bool:
        """Hand `value` (a connection, or None: a free slot) to the first live waiter;
        whether there was one."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(value)
                return True
        return False

    def _reap(self) -> None:
        self._reaper = None
        cutoff = time.monotonic() - self.idle_seconds
        kept = []
        for connection, since in self._idle:
            if since <= cutoff:
                connection.terminate()  # idle: nothing in flight to wait for
                self._open -= 1
            else:
                kept.append((connection, since))
        self._idle = kept
        if kept:
            oldest = min(since for _, since in kept)
            self._reaper = asyncio.get_running_loop().call_later(
                max(oldest + self.idle_seconds - time.monotonic(), 0.1), self._reap
            )

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            try:
                await asyncio.wait_for(connection.close(), timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                connection.terminate()
            self._open -= 1
        while self._wake_one(None):
            pass  # each waiter finds the connections closed
