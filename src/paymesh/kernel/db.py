"""Databases: one SQLAlchemy async engine per service, SQLite or PostgreSQL from one code base.

* SQLite (embedded): one file per service under `data_dir`, WAL, busy timeout, foreign keys
  on. Two engines on the file: writes go through a pool of one connection that begins
  with `BEGIN IMMEDIATE`, so the writers of one process wait their turn in the pool's FIFO
  queue (fair, no sleeping busy handler, no lock-upgrade failures); reads run in deferred
  transactions on `PRAGMA query_only` connections of their own and never wait for a
  writer (WAL readers see the last commit).
  Statements run on the event loop's thread (`kernel/sqlite_driver.py`).
* PostgreSQL (distributed): asyncpg pool; every service lives in a schema named after it
  (`search_path`), or in its own database when `PAYMESH_<SERVICE>_DATABASE_URL` is set.
  Read sessions run in autocommit (no BEGIN/ROLLBACK round trips).

Transactions begin and end at the edge (`Database.transaction()`); services and
repositories only `flush()`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    MetaData,
    bindparam,
    column,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import Insert
from sqlalchemy.sql.schema import Table
from sqlalchemy.types import TypeDecorator

from paymesh.kernel.config import Settings
from paymesh.kernel.jsonutil import column_dumps
from paymesh.kernel.reads import DirectReads, Query, in_transaction, transaction_of
from paymesh.kernel.sqlite_driver import (
    WalCheckpoints,
    connection_pragmas,
    inline_creator,
    sqlite_connection,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BIGINT = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
"""64-bit integer; on SQLite plain INTEGER so it can be a rowid alias."""

JSON_TYPE = JSON().with_variant(postgresql.JSONB(), "postgresql")


def service_metadata() -> MetaData:
    """A fresh MetaData with stable constraint names, one per service."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def mark_for_commit(session: AsyncSession, mark: str) -> None:
    """Mark the session's transaction: its commit calls the mark's wakers
    (`Database.wake_on_commit`)."""
    session.info[mark] = True


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else _in_utc(value)

    def bind_processor(self, dialect: Any) -> Callable[[Any], Any] | None:
        """On SQLite, one step from an aware datetime to the text SQLite's DATETIME stores
        ("2026-12-07 03:10:00.123456", always six fractional digits): SQLAlchemy's own
        processor formats it through a dict and `%`, which cost a tenth of a risk decision's
        writes (py-spy). Elsewhere the decorator's usual chain."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_datetime_text

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _in_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is dt.UTC:
        return value
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not accepted; use UTC-aware ones")
    return value.astimezone(dt.UTC)


def _sqlite_datetime_text(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    # "YYYY-MM-DD HH:MM:SS.ffffff+00:00": the year has four digits from year 1 on.
    return _in_utc(value).isoformat(" ", "microseconds")[:26]


def resolve_database_url(settings: Settings, service: str) -> tuple[URL, str | None]:
    """The URL a service connects to and, on PostgreSQL, the schema it lives in."""
    raw = settings.service(service).database_url or settings.database_url
    if raw is None:
        path = Path(settings.data_dir) / f"{service}.db"
        return make_url(f"sqlite+aiosqlite:///{path}"), None
    url = make_url(raw)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            raise ValueError("SQLite needs a file path: every service gets its own file")
        path = Path(database)
        own = settings.service(service).database_url is not None
        file = path if own else path.with_name(f"{path.stem}-{service}{path.suffix or '.db'}")
        return url.set(drivername="sqlite+aiosqlite", database=str(file)), None
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+asyncpg"), service
    raise ValueError(f"unsupported database {url.get_backend_name()!r}: use SQLite or PostgreSQL")


class Database:
    """A service's engine and its unit of work."""

    def __init__(self, service: str, url: URL, schema: str | None, pool_size: int = 10) -> None:
        self.service = service
        self.url = url
        self.schema = schema
        self.is_postgres = url.get_backend_name() == "postgresql"
        self.is_sqlite = not self.is_postgres
        if self.is_sqlite and url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = _create_engine(url, schema, pool_size)
        # PostgreSQL reads skip BEGIN and ROLLBACK (two round trips): in READ COMMITTED
        # each statement takes its own snapshot inside a transaction too, so a read
        # transaction would promise nothing more. Same pool as the writes.
        self.read_engine: AsyncEngine = (
            _create_sqlite_reader(url, pool_size)
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        """Sessions that may write (on SQLite: one at a time per process, in turn)."""
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        """Sessions that only read (on SQLite: concurrent, never behind a writer)."""
        self.reads = DirectReads(
            self.read_engine.dialect,
            url,
            schema,
            sqlite_path=str(url.database) if self.is_sqlite else None,
            connections=max(2, pool_size // 2),
        )
        """One-statement reads straight on the driver (kernel/reads.py)."""
        self._after_commit: list[Callable[[AsyncSession], None]] = []
        self._wakers: dict[str, list[Callable[[], None]]] = {}
        self._checkpoints: WalCheckpoints | None = None
        if self.is_sqlite:
            checkpoints = self._checkpoints = WalCheckpoints(str(url.database))
            # Every commit on the writer (a unit of work, the ledger's writer, a job).
            event.listen(self.engine.sync_engine, "commit", lambda _c: checkpoints.after_commit())

    @classmethod
    def for_service(cls, settings: Settings, service: str) -> Database:
        url, schema = resolve_database_url(settings, service)
        return cls(service, url, schema, settings.database_pool_size)

    def on_commit(self, callback: Callable[[AsyncSession], None]) -> None:
        """Run `callback(session)` after every successful commit (e.g. wake the relay)."""
        self._after_commit.append(callback)

    def wake_on_commit(self, mark: str, wake: Callable[[], None]) -> None:
        """Call `wake()` after each commit of a session marked with `mark`
        (`mark_for_commit`): a worker in this process starts on work just committed instead
        of at its next poll. Every waker of the mark is called; then the mark is cleared."""
        self._wakers.setdefault(mark, []).append(wake)

    @asynccontextmanager
    async def transaction(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """The unit of work: commits when the block ends, rolls back when it raises."""
        factory = self.read_sessions if read_only else self.sessions
        async with factory() as session:
            async with session.begin():
                yield session
            self.after_commit(session)

    def after_commit(self, session: AsyncSession) -> None:
        for callback in self._after_commit:
            callback(session)
        for mark, wakers in self._wakers.items():
            if session.info.pop(mark, False):
                for wake in wakers:
                    wake()

    async def dispose(self) -> None:
        if self._checkpoints is not None:
            await self._checkpoints.close()
        await self.reads.close()
        await self.engine.dispose()
        if self.is_sqlite:
            await self.read_engine.dispose()


SQLITE_WRITER_WAIT_SECONDS = 30.0
"""How long a SQLite writer waits for its turn before it is refused (pool timeout)."""


def _create_engine(url: URL, schema: str | None, pool_size: int) -> AsyncEngine:
    # hide_parameters: a database error's message (and so its logged traceback) names the
    # statement but never the values bound to it: usernames, addresses, client ids, cursors.
    if url.get_backend_name() == "postgresql":
        server_settings = {"search_path": schema} if schema else {}
        postgres = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            hide_parameters=True,
            json_serializer=column_dumps,
            connect_args={"server_settings": server_settings},
        )
        event.listen(postgres.sync_engine, "handle_error", _drop_error_detail)
        return postgres
    # One writer connection: SQLite has one writer per file anyway, and the pool's queue
    # (FIFO) is a fair line, where BEGIN IMMEDIATE's busy handler sleeps ever longer and
    # lets a late comer win. A writer that waits longer than this is refused (pool timeout).
    engine = create_async_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=SQLITE_WRITER_WAIT_SECONDS,
        hide_parameters=True,
        json_serializer=column_dumps,
        async_creator=inline_creator(str(url.database)),
    )
    _configure_sqlite(engine, begin="BEGIN IMMEDIATE")
    return engine


def _create_sqlite_reader(url: URL, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        hide_parameters=True,
        json_serializer=column_dumps,
        async_creator=inline_creator(str(url.database)),
    )
    _configure_sqlite(engine, begin="BEGIN", query_only=True)
    return engine


def _drop_error_detail(context: ExceptionContext) -> None:
    """PostgreSQL's DETAIL repeats the values a statement was refused for ("Key (email)=
    (...) already exists"), and asyncpg prints it with the error: drop it, as
    hide_parameters drops the bound values. The message and constraint name remain."""
    error: BaseException | None = context.original_exception
    for _ in range(3):  # SQLAlchemy's asyncpg adapter error, then asyncpg's own
        if error is None:
            return
        if getattr(error, "detail", None):
            error.detail = None  # type: ignore[attr-defined]
        error = error.__cause__


def _configure_sqlite(engine: AsyncEngine, *, begin: str, query_only: bool = False) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN, so it can be BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in connection_pragmas(query_only=query_only):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Straight to sqlite3 (the statement runs on this thread anyway): through
        # `exec_driver_sql` it cost a tenth of a one-row read's CPU.
        sqlite_connection(connection.connection.dbapi_connection).execute(begin)


def insert_ignoring_conflicts(session: AsyncSession, table: Table) -> Insert:
    """`INSERT ... ON CONFLICT DO NOTHING` on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def due_keys(table: Table, *conditions: Any, order_by: Any, limit: int, postgres: bool) -> Any:
    """The primary keys of due rows as a subquery, locked by the statement that uses it and
    skipped by other workers (SKIP LOCKED on PostgreSQL; SQLite has one writer at a time):
    `update(table).where(key.in_(due_keys(...))).values(lease...).returning(...)` claims
    and reads a batch in one statement. `order_by`: a column, or a tuple of columns."""
    key = next(iter(table.primary_key.columns))
    ordering = order_by if isinstance(order_by, tuple) else (order_by,)
    query = select(key).where(*conditions).order_by(*ordering).limit(limit)
    if postgres:
        query = query.with_for_update(skip_locked=True)
    return query.scalar_subquery()


def any_due(table: Table, *conditions: Any) -> Query:
    """Whether any row meets `conditions` (`SELECT key … LIMIT 1`), for a worker's poll to
    ask on the direct read path (`database.reads.one`) before it opens a claim's transaction:
    most polls find nothing, and an empty claim still cost BEGIN, an UPDATE of nothing and
    COMMIT through the engine (about 1 ms of CPU). The claim itself (`due_keys`) still
    decides what is taken. Times in the conditions are `bindparam`s, given at each poll."""
    key = next(iter(table.primary_key.columns))
    return Query(select(key).where(*conditions).limit(1))


def advisory_lock_key(scope: str, key: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock id for one caller's key."""
    digest = hashlib.blake2b(f"{scope}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_XACT_LOCK = Query(select(func.pg_advisory_xact_lock(bindparam("lock", type_=BigInteger))))
_LOCKS_HELD = "paymesh.locks_held"


# The locks in ascending order, whichever order unnest yields them: the subquery's sort
# feeds the aggregate, so two transactions taking overlapping sets cannot deadlock.
_XACT_LOCKS = Query(
    text(
        "SELECT count(pg_advisory_xact_lock(lock)) AS locked FROM "
        "(SELECT lock FROM unnest(CAST(:locks AS bigint[])) AS lock ORDER BY lock) AS wanted"
    )
    .bindparams(bindparam("locks", type_=postgresql.ARRAY(BigInteger)))
    .columns(column("locked", BigInteger))
)


async def lock_until_commit(session: AsyncSession, scope: str, key: str) -> None:
    """Serialise the transactions that take (`scope`, `key`) until each commits: a
    transaction-scoped advisory lock on PostgreSQL; nothing on SQLite, where a writing
    transaction is already alone (BEGIN IMMEDIATE, one writer per database).

    One round trip on the transaction's own connection (kernel/reads.py: in_transaction),
    and none for a lock this transaction already holds (a group commit's batch that holds
    several works of one customer takes the customer's lock once)."""
    await lock_all_until_commit(session, scope, [key])


async def lock_all_until_commit(session: AsyncSession, scope: str, keys: Iterable[str]) -> None:
    """`lock_until_commit` for several keys in one round trip, taken in ascending order of
    their lock ids (as every caller of this takes them, so none deadlocks another)."""
    if not is_postgres(session):
        return
    wanted = locks_not_held(session, scope, keys)
    if not wanted:
        return
    # Either statement begins the transaction if need be.
    if len(wanted) == 1:
        await in_transaction(session, _XACT_LOCK, lock=wanted[0])
    else:
        await in_transaction(session, _XACT_LOCKS, locks=wanted)
    note_locks_held(session, wanted)


def locks_not_held(session: AsyncSession, scope: str, keys: Iterable[str]) -> list[int]:
    """The advisory lock ids of (`scope`, each key) this transaction does not hold yet, in
    ascending order: for a statement that takes them itself (with `pg_advisory_xact_lock`,
    in that order) and then says so with `note_locks_held`."""
    held = session.info.get(_LOCKS_HELD)
    owned: set[int] = held[1] if held is not None and held[0] is transaction_of(session) else set()
    return sorted({advisory_lock_key(scope, key) for key in keys} - owned)


def note_locks_held(session: AsyncSession, locks: Iterable[int]) -> None:
    """Remember that the session's transaction took these advisory locks (until commit),
    so `lock_all_until_commit` does not ask for them again."""
    if session.in_nested_transaction():
        return  # a savepoint rolled back would release them: not remembered
    held = session.info.get(_LOCKS_HELD)
    transaction = transaction_of(session)
    if held is None or held[0] is not transaction:
        taken: set[int] = set()
        held = session.info[_LOCKS_HELD] = (transaction, taken)
    held[1].update(locks)
