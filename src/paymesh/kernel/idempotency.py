"""The Idempotency-Key contract (SQL-backed, one table per service).

* Same key, same request: the first response (status and body) is replayed with
  `Idempotent-Replayed: true`.
* Same key, different request: 422 `idempotency_key_reused`.
* Same key while the first request still runs: 409 `idempotency_request_in_progress`.
* Keys are scoped to the caller and kept at least 24 h.

The in-flight marker is committed first so concurrent requests see it; the stored response
is written in the same transaction as the request's own work, so a request whose effects
committed can never run a second time. 5xx outcomes release the key for a retry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import Database, insert_ignoring_conflicts, utcnow
from paymesh.kernel.errors import (
    IdempotencyKeyReused,
    IdempotencyRequestInProgress,
    InvalidIdempotencyKey,
)
from paymesh.kernel.jsonutil import dumps, loads
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
    def __init__(
        self,
        database: Database,
        tables: KernelTables,
        *,
        ttl_seconds: int = 86_400,
        lease_seconds: float = 60.0,
    ) -> None:
        self.database = database
        self.table = tables.idempotency
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self.lease = dt.timedelta(seconds=lease_seconds)

    async def begin(self, scope: str, key: str, fingerprint: str) -> StoredResponse | None:
        """Claim the key (None) or return the response to replay; raise on conflicts."""
        table = self.table
        now = utcnow()
        async with self.database.transaction() as session:
            await session.execute(
                delete(table).where(
                    table.c.scope == scope, table.c.key == key, table.c.expires_at < now
                )
            )
            inserted = await session.execute(
                insert_ignoring_conflicts(session, table).values(
                    scope=scope,
                    key=key,
                    request_hash=fingerprint,
                    state="in_flight",
                    locked_until=now + self.lease,
                    created_at=now,
                    expires_at=now + self.ttl,
                )
            )
            if inserted.rowcount:  # type: ignore[attr-defined]
                return None
            row = (
                await session.execute(
                    select(table).where(table.c.scope == scope, table.c.key == key)
                )
            ).one()
            if row.request_hash != fingerprint:
                raise IdempotencyKeyReused()
            if row.state == "completed":
                return StoredResponse(
                    status=row.response_status,
                    headers=dict(row.response_headers or {}),
                    body=bytes(row.response_body or b""),
                )
            if row.locked_until is not None and row.locked_until > now:
                raise IdempotencyRequestInProgress()
            # The first attempt died without committing anything: this one takes over.
            await session.execute(
                update(table)
                .where(table.c.scope == scope, table.c.key == key)
                .values(locked_until=now + self.lease)
            )
            return None

    async def complete(
        self, session: AsyncSession, scope: str, key: str, response: StoredResponse
    ) -> None:
        """Store the response in the request's own transaction."""
        await session.execute(
            update(self.table)
            .where(self.table.c.scope == scope, self.table.c.key == key)
            .values(
                state="completed",
                locked_until=None,
                response_status=response.status,
                response_headers=response.headers,
                response_body=response.body,
            )
        )

    async def release(self, scope: str, key: str) -> None:
        """Forget an in-flight key whose request failed without effect, so it can be retried."""
        async with self.database.transaction() as session:
            await session.execute(
                delete(self.table).where(
                    self.table.c.scope == scope,
                    self.table.c.key == key,
                    self.table.c.state == "in_flight",
                )
            )

    async def purge_expired(self) -> int:
        async with self.database.transaction() as session:
            result = await session.execute(
                delete(self.table).where(self.table.c.expires_at < utcnow())
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
