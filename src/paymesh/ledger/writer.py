"""How one group-commit batch reaches the database.

Both writers do the same, in one transaction: lock the transfers the batch names, then
their accounts and the accounts of new transfers (always in id order, so writers never
deadlock), hand them to `apply` (the in-memory `Posting`), then write balances, new and
resolved transfers, entries and outbox events.

* `SqlAlchemyWriter` works on any database (SQLite in the embedded shape).
* `PostgresWriter` speaks asyncpg directly on PostgreSQL: two locking SELECTs and one
  statement that writes everything through `unnest` arrays, whatever the batch size, with
  statements prepared once per connection. It exists for throughput; the rules live in
  `Posting` either way, and the test suite runs both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import asyncpg
import orjson
from sqlalchemy.engine import URL

from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.events import Outbox
from paymesh.ledger import repository
from paymesh.ledger.posting import AccountState, Posting, TransferState

T = TypeVar("T")
Apply = Callable[[Posting], T]


class BatchWriter(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(
        self, transfer_ids: set[str], account_ids: set[str], apply: Apply[T]
    ) -> tuple[T, Posting]: ...


def event_envelopes(outbox: Outbox, posting: Posting) -> list[dict[str, Any]]:
    return [
        outbox.envelope(event_type, transfer_event_data(transfer), transfer.id, posting.now)
        for event_type, transfer in posting.events
    ]


def transfer_event_data(transfer: TransferState) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id,
        "amount": transfer.amount,
        "posted_amount": transfer.posted_amount,
        "currency": transfer.currency,
        "code": transfer.code,
        "status": transfer.status,
        "metadata": transfer.metadata,
    }


def _accounts_of(transfers: dict[str, TransferState]) -> set[str]:
    return {
        account
        for transfer in transfers.values()
        for account in (transfer.debit_account_id, transfer.credit_account_id)
    }


class SqlAlchemyWriter:
    def __init__(self, database: Database, outbox: Outbox) -> None:
        self.database = database
        self.outbox = outbox

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def commit(
        self, transfer_ids: set[str], account_ids: set[str], apply: Apply[T]
    ) -> tuple[T, Posting]:
        postgres = self.database.is_postgres
        async with self.database.engine.begin() as connection:
            transfers = await repository.lock_transfers(connection, transfer_ids, postgres)
            accounts = await repository.lock_accounts(
                connection, account_ids | _accounts_of(transfers), postgres
            )
            posting = Posting(accounts, transfers, utcnow())
            results = apply(posting)
            await repository.write_posting(connection, posting)
            await self.outbox.add_envelopes(connection, event_envelopes(self.outbox, posting))
        return results, posting


_TRANSFER_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount, posted_amount, currency, code, status, "
    "pending, timeout_seconds, expires_at, metadata, created_at, resolved_at"
)
_LOCK_TRANSFERS = (
    f"SELECT {_TRANSFER_COLUMNS} FROM ledger_transfer WHERE id = ANY($1::text[]) "
    "ORDER BY id FOR UPDATE"
)
_LOCK_ACCOUNTS = (
    "SELECT id, currency, flags, debits_pending, debits_posted, credits_pending, credits_posted "
    "FROM ledger_account WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
)
# Everything a batch writes travels as one JSON document (`$1`), unpacked by PostgreSQL:
# one parameter to encode instead of thousands of array elements (asyncpg type-checks
# each element of an array parameter in Python).
_WRITE = f"""
WITH batch AS (SELECT $1::jsonb AS document),
updated_accounts AS (
    UPDATE ledger_account AS account
    SET debits_pending = (row->>1)::bigint, debits_posted = (row->>2)::bigint,
        credits_pending = (row->>3)::bigint, credits_posted = (row->>4)::bigint
    FROM batch, jsonb_array_elements(batch.document->'accounts') AS row
    WHERE account.id = row->>0
    RETURNING 1
), new_transfers AS (
    INSERT INTO ledger_transfer ({_TRANSFER_COLUMNS})
    SELECT row->>0, row->>1, row->>2, (row->>3)::bigint, (row->>4)::bigint, row->>5,
        (row->>6)::int, row->>7, (row->>8)::boolean, (row->>9)::int,
        (row->>10)::timestamptz, row->11, (row->>12)::timestamptz, (row->>13)::timestamptz
    FROM batch, jsonb_array_elements(batch.document->'transfers') AS row
    RETURNING 1
), resolved_transfers AS (
    UPDATE ledger_transfer AS transfer
    SET status = row->>1, posted_amount = (row->>2)::bigint,
        resolved_at = (row->>3)::timestamptz
    FROM batch, jsonb_array_elements(batch.document->'resolved') AS row
    WHERE transfer.id = row->>0
    RETURNING 1
), new_entries AS (
    INSERT INTO ledger_entry (account_id, transfer_id, side, kind, amount, debits_pending,
        debits_posted, credits_pending, credits_posted, created_at)
    SELECT row->>0, row->>1, row->>2, row->>3, (row->>4)::bigint, (row->>5)::bigint,
        (row->>6)::bigint, (row->>7)::bigint, (row->>8)::bigint, (row->>9)::timestamptz
    FROM batch, jsonb_array_elements(batch.document->'entries') WITH ORDINALITY AS e(row, position)
    ORDER BY position
    RETURNING 1
)
INSERT INTO outbox_event (id, type, subject, envelope, created_at)
SELECT row->>0, row->>1, row->>2, row->3, (row->>4)::timestamptz
FROM batch, jsonb_array_elements(batch.document->'events') AS row
"""


def _write_document(posting: Posting, envelopes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "accounts": [
            (
                account.id,
                account.debits_pending,
                account.debits_posted,
                account.credits_pending,
                account.credits_posted,
            )
            for account in (posting.accounts[key] for key in sorted(posting.dirty_accounts))
        ],
        "transfers": [
            (
                t.id,
                t.debit_account_id,
                t.credit_account_id,
                t.amount,
                t.posted_amount,
                t.currency,
                t.code,
                t.status,
                t.pending,
                t.timeout_seconds,
                t.expires_at,
                t.metadata,
                t.created_at,
                t.resolved_at,
            )
            for t in posting.new_transfers.values()
        ],
        "resolved": [
            (t.id, t.status, t.posted_amount, t.resolved_at)
            for key, t in posting.resolved_transfers.items()
            if key not in posting.new_transfers
        ],
        "entries": [
            (
                e["account_id"],
                e["transfer_id"],
                e["side"],
                e["kind"],
                e["amount"],
                e["debits_pending"],
                e["debits_posted"],
                e["credits_pending"],
                e["credits_posted"],
                e["created_at"],
            )
            for e in posting.entries
        ],
        "events": [
            (envelope["id"], envelope["type"], envelope["subject"], envelope, posting.now)
            for envelope in envelopes
        ],
    }


async def _init_connection(connection: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name,
            encoder=lambda value: orjson.dumps(value, option=orjson.OPT_UTC_Z).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


def asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """The writer's connections keep no session state (no session locks, LISTEN, cursors or
    SET after connecting): asyncpg's default reset on release (`pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`) would be one more round trip per batch. asyncpg still
    rolls back a transaction left open before a connection goes back to the pool."""


class PostgresWriter:
    def __init__(self, database: Database, outbox: Outbox, connections: int) -> None:
        self.database = database
        self.outbox = outbox
        self.connections = connections
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                asyncpg_dsn(self.database.url),
                min_size=1,
                max_size=self.connections,
                init=_init_connection,
                reset=_nothing_to_reset,
                server_settings={
                    "search_path": self.database.schema or "public",
                    # Every statement here looks rows up by primary key. Without fresh
                    # statistics (a new ledger, autovacuum off) the planner would scan
                    # whole tables for `id = ANY($1)`, and cached plans would keep doing so.
                    "enable_seqscan": "off",
                },
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except TimeoutError:
                pool.terminate()

    async def commit(
        self, transfer_ids: set[str], account_ids: set[str], apply: Apply[T]
    ) -> tuple[T, Posting]:
        if self._pool is None:
            await self.open()
        assert self._pool is not None
        async with self._pool.acquire() as connection, connection.transaction():
            transfers: dict[str, TransferState] = {}
            if transfer_ids:
                rows = await connection.fetch(_LOCK_TRANSFERS, sorted(transfer_ids))
                transfers = {row["id"]: TransferState(**dict(row)) for row in rows}
            wanted = sorted(account_ids | _accounts_of(transfers))
            rows = await connection.fetch(_LOCK_ACCOUNTS, wanted)
            accounts = {row["id"]: AccountState(*row) for row in rows}
            posting = Posting(accounts, transfers, utcnow())
            results = apply(posting)
            if posting.entries or posting.dirty_accounts:
                envelopes = event_envelopes(self.outbox, posting)
                await connection.execute(_WRITE, _write_document(posting, envelopes))
        return results, posting
