"""The Idempotency-Key contract (SQL-backed, one table per service).

* Same key, same request: the first response (status and body) is replayed with
  `Idempotent-Replayed: true`.
* Same key, different request: 422 `idempotency_key_reused`.
* Same key while the first request still runs: 409 `idempotency_request_in_progress`.
* Keys are scoped to the caller and kept at least 24 h.

The stored response is written in the same transaction as the request's own work (one
writer transaction per request), so a request whose effects committed can never run a
second time, and one that died left nothing behind. 5xx outcomes store nothing: the key
stays free for a retry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import Database, advisory_lock_key, utcnow
from paymesh.kernel.errors import (
    IdempotencyKeyReused,
    IdempotencyRequestInProgress,
    InvalidIdempotencyKey,
)
from paymesh.kernel.jsonutil import dumps, loads
from paymesh.kernel.reads import Query, in_transaction
from paymesh.kernel.tables import KernelTables

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
REPLAYED_HEADERS = ("content-type", "location")


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """Hash of what makes two requests 'the same': method, path and the JSON body's meaning."""
    try:
        canonical = dumps(_sorted(loads(body))) if body else b""
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), b"\0", path.encode(), b"\0", canonical):
        digest.update(part)
    return digest.hexdigest()


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise InvalidIdempotencyKey(detail="1 to 255 visible ASCII characters")
    return key


class IdempotencyStore:
    """One caller's keys, kept in the service's own database.

    A request with a key costs one writer transaction: its response is stored (an upsert)
    in the transaction of its own work, then one commit; nothing is written before the
    work, so a crash leaves no claim behind. "Still running" is known without a committed
    marker: in this process by `running`; across processes (PostgreSQL) by a
    transaction-scoped advisory lock on the key, taken by `claim` in the request's own
    transaction, which a second request fails to take. On SQLite (one process owns the
    file) `claim` looks the key up on a read connection, so the writer lock is not held
    while the endpoint works on something else first (a call to another service).
    """

    def __init__(self, database: Database, tables: KernelTables, *, ttl_seconds: int = 86_400):
        self.database = database
        self.table = table = tables.idempotency
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self._running: set[tuple[str, str]] = set()
        # Built once: constructing a statement costs more than running it on SQLite.
        this_key = (table.c.scope == bindparam("scope")) & (table.c.key == bindparam("key"))
        # On the driver (kernel/reads.py): through a session each statement cost about as
        # much CPU as a request's whole decision.
        self._find = Query(
            select(
                table.c.request_hash,
                table.c.state,
                table.c.locked_until,
                table.c.expires_at,
                table.c.response_status,
                table.c.response_headers,
                table.c.response_body,
            ).where(this_key)
        )
        self._try_lock = Query(
            select(
                func.pg_try_advisory_xact_lock(bindparam("lock", type_=BigInteger)).label("held")
            )
        )
        upsert = (postgresql if database.is_postgres else sqlite).insert(table)
        replaced = {
            column.name: upsert.excluded[column.name]
            for column in table.columns
            if column.name not in ("scope", "key")
        }
        # Overwrites only a record that no longer counts (expired, or an older release's
        # abandoned in-flight claim): never another request's live outcome.
        self._store = Query(
            upsert.on_conflict_do_update(
                index_elements=[table.c.scope, table.c.key],
                set_=replaced,
                where=(table.c.expires_at <= upsert.excluded.created_at)
                | (table.c.state != "completed"),
            )
        )

    @contextmanager
    def running(self, scope: str, key: str) -> Iterator[None]:
        """Marks the key as running in this process; a second request with it is 409."""
        marker = (scope, key)
        if marker in self._running:
            raise IdempotencyRequestInProgress()
        self._running.add(marker)
        try:
            yield
        finally:
            self._running.discard(marker)

    async def claim(
        self,
        request_session: Callable[[], Awaitable[AsyncSession]],
        scope: str,
        key: str,
        fingerprint: str,
    ) -> StoredResponse | None:
        """The response to replay, or None when this request is the one to run. Raises 422
        for another request under the key, 409 while a request with it runs elsewhere.
        Call inside `running(scope, key)`."""
        if self.database.is_postgres:
            return await self.claim_in(await request_session(), scope, key, fingerprint)
        return await self.lookup(scope, key, fingerprint)

    async def claim_in(
        self, session: AsyncSession, scope: str, key: str, fingerprint: str
    ) -> StoredResponse | None:
        """PostgreSQL's claim, in `session`'s transaction: the key's advisory lock (409
        while another process runs a request with it), then the outcome to replay, read
        under the lock (one committed since any earlier lookup counts)."""
        if not await self._hold(session, scope, key):
            raise IdempotencyRequestInProgress()
        rows = await in_transaction(session, self._find, scope=scope, key=key)
        return _outcome(rows[0] if rows else None, fingerprint)

    async def lookup(self, scope: str, key: str, fingerprint: str) -> StoredResponse | None:
        """What `claim` answers, read on a connection of its own without the key's lock: on
        SQLite that is the whole claim; on PostgreSQL a replay found before work that a
        replay must not redo (the claim in the work's transaction still decides)."""
        row = await self.database.reads.one(self._find, scope=scope, key=key)
        return _outcome(row, fingerprint)

    async def complete(
        self,
        session: AsyncSession,
        scope: str,
        key: str,
        fingerprint: str,
        response: StoredResponse,
    ) -> None:
        """Store the response in the request's own transaction (same commit as its work)."""
        now = utcnow()
        await in_transaction(
            session,
            self._store,
            scope=scope,
            key=key,
            request_hash=fingerprint,
            state="completed",
            locked_until=None,
            response_status=response.status,
            response_headers=response.headers,
            response_body=response.body,
            created_at=now,
            expires_at=now + self.ttl,
        )

    async def complete_refusal(
        self, scope: str, key: str, fingerprint: str, response: StoredResponse
    ) -> None:
        """Store a 4xx outcome after its request's own writes were rolled back, in a
        transaction of its own: the refusal is the answer a retry gets too."""
        async with self.database.transaction() as session:
            if self.database.is_postgres and not await self._hold(session, scope, key):
                return  # another request under the key runs now: its outcome counts
            await self.complete(session, scope, key, fingerprint, response)

    async def _hold(self, session: AsyncSession, scope: str, key: str) -> bool:
        """PostgreSQL: take the key's transaction-scoped advisory lock if it is free."""
        lock = advisory_lock_key(scope, key)
        return bool((await in_transaction(session, self._try_lock, lock=lock))[0]["held"])

    async def purge_expired(self) -> int:
        async with self.database.transaction() as session:
            result = await session.execute(
                delete(self.table).where(self.table.c.expires_at < utcnow())
            )
            return int(result.rowcount)  # type: ignore[attr-defined]


def _outcome(row: Mapping[str, Any] | None, fingerprint: str) -> StoredResponse | None:
    """The stored response a key's record holds for the request `fingerprint`: None when
    none counts (no record, an expired one, an abandoned claim); 422 when the key was used
    for another request; 409 while an older release's claim is live."""
    if row is None:
        return None
    now = utcnow()
    if row["expires_at"] <= now:
        return None
    if row["state"] != "completed":
        # The in-flight claim of an older release: live while its lease runs.
        locked_until = row["locked_until"]
        if locked_until is not None and locked_until > now:
            raise IdempotencyRequestInProgress()
        return None
    if row["request_hash"] != fingerprint:
        raise IdempotencyKeyReused()
    return StoredResponse(
        status=row["response_status"],
        headers=dict(row["response_headers"] or {}),
        body=bytes(row["response_body"] or b""),
    )


@dataclass(frozen=True)
class KeyedRequest:
    """A request's Idempotency-Key for work that runs in a transaction shared with other
    requests' work (kernel/groupcommit.py) rather than in the request's own: the stored
    outcome is looked up before the work (`IdempotencyStore.lookup`); the work then holds
    the key and stores its response in the shared transaction, so both commit together."""

    store: IdempotencyStore
    scope: str
    key: str
    fingerprint: str

    async def hold(self, session: AsyncSession) -> StoredResponse | None:
        """In the work's transaction, before its writes: on PostgreSQL the key's advisory
        lock (409 while another process runs a request with it) and the outcome to replay
        if that process committed one since the lookup. On SQLite the lookup said it all:
        one process owns the file, and `running` keeps it to one request per key."""
        if not self.store.database.is_postgres:
            return None
        return await self.store.claim_in(session, self.scope, self.key, self.fingerprint)

    async def complete(self, session: AsyncSession, response: StoredResponse) -> None:
        """The response, stored in the work's transaction."""
        await self.store.complete(session, self.scope, self.key, self.fingerprint, response)
