"""Every query of the ledger."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import ARRAY, Row, String, Table, any_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from paymesh.kernel.db import is_postgres
from paymesh.kernel.jsonutil import dumps, strict_loads
from paymesh.kernel.reads import DirectReads, Query
from paymesh.ledger import errors
from paymesh.ledger.models import Account, Entry, Transfer
from paymesh.ledger.posting import AccountState, Posting, TransferState

accounts = cast(Table, Account.__table__)
transfers = cast(Table, Transfer.__table__)
entries = cast(Table, Entry.__table__)

_TRANSFER_COLUMNS = (
    "id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "posted_amount",
    "currency",
    "code",
    "status",
    "pending",
    "timeout_seconds",
    "expires_at",
    "metadata",
    "created_at",
    "resolved_at",
)

_update_account = (
    update(accounts)
    .where(accounts.c.id == bindparam("account_id"))
    .values(
        debits_pending=bindparam("new_debits_pending"),
        debits_posted=bindparam("new_debits_posted"),
        credits_pending=bindparam("new_credits_pending"),
        credits_posted=bindparam("new_credits_posted"),
    )
)
_update_transfer = (
    update(transfers)
    .where(transfers.c.id == bindparam("transfer_id"))
    .values(
        status=bindparam("new_status"),
        posted_amount=bindparam("new_posted_amount"),
        resolved_at=bindparam("new_resolved_at"),
    )
)


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The values `encode_cursor` packed; strictly parsed, so a forged cursor cannot carry
    NUL or a lone surrogate into a query."""
    try:
        values = strict_loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise errors.InvalidCursor() from None
    if not isinstance(values, list) or len(values) != arity:
        raise errors.InvalidCursor()
    return values


def _cursor_instant(value: Any) -> dt.datetime:
    """A cursor's timestamp: an aware datetime that converts to UTC, or InvalidCursor."""
    try:
        instant = dt.datetime.fromisoformat(value)
        if instant.tzinfo is None:
            raise ValueError("naive")
        return instant.astimezone(dt.UTC)
    except (TypeError, ValueError, OverflowError):
        raise errors.InvalidCursor() from None


def transfer_state(row: Row[Any] | Any) -> TransferState:
    mapping = row._mapping
    return TransferState(
        **{key: mapping[key] for key in _TRANSFER_COLUMNS if key != "metadata"},
        metadata=mapping["metadata"],
    )


# -- the batch writer's queries ----------------------------------------------------------


_ACCOUNT_STATE_COLUMNS = (
    accounts.c.id,
    accounts.c.currency,
    accounts.c.flags,
    accounts.c.debits_pending,
    accounts.c.debits_posted,
    accounts.c.credits_pending,
    accounts.c.credits_posted,
)

# Built once. On PostgreSQL `= ANY(:ids)` keeps one prepared statement for any batch size
# and the rows are locked in id order, so concurrent writers never deadlock; SQLite has a
# single writer (BEGIN IMMEDIATE) and needs no row locks.
_ids = bindparam("ids", type_=ARRAY(String))
_LOCK_TRANSFERS_POSTGRES = (
    select(transfers).where(transfers.c.id == any_(_ids)).order_by(transfers.c.id).with_for_update()
)
_LOCK_ACCOUNTS_POSTGRES = (
    select(*_ACCOUNT_STATE_COLUMNS)
    .where(accounts.c.id == any_(_ids))
    .order_by(accounts.c.id)
    .with_for_update()
)
_READ_TRANSFERS_SQLITE = select(transfers).where(
    transfers.c.id.in_(bindparam("ids", expanding=True))
)
_READ_ACCOUNTS_SQLITE = select(*_ACCOUNT_STATE_COLUMNS).where(
    accounts.c.id.in_(bindparam("ids", expanding=True))
)


async def lock_transfers(
    connection: AsyncConnection, ids: Iterable[str], postgres: bool
) -> dict[str, TransferState]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = _LOCK_TRANSFERS_POSTGRES if postgres else _READ_TRANSFERS_SQLITE
    rows = await connection.execute(query, {"ids": wanted})
    return {row.id: transfer_state(row) for row in rows}


async def lock_accounts(
    connection: AsyncConnection, ids: Iterable[str], postgres: bool
) -> dict[str, AccountState]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = _LOCK_ACCOUNTS_POSTGRES if postgres else _READ_ACCOUNTS_SQLITE
    rows = await connection.execute(query, {"ids": wanted})
    return {row.id: AccountState(*row) for row in rows}


async def write_posting(session: AsyncConnection, posting: Posting) -> None:
    if posting.dirty_accounts:
        await session.execute(
            _update_account,
            [
                {
                    "account_id": account.id,
                    "new_debits_pending": account.debits_pending,
                    "new_debits_posted": account.debits_posted,
                    "new_credits_pending": account.credits_pending,
                    "new_credits_posted": account.credits_posted,
                }
                for account in (posting.accounts[key] for key in sorted(posting.dirty_accounts))
            ],
        )
    if posting.new_transfers:
        await session.execute(
            transfers.insert(),
            [
                {key: getattr(transfer, key) for key in _TRANSFER_COLUMNS}
                for transfer in posting.new_transfers.values()
            ],
        )
    resolved = [
        transfer
        for key, transfer in posting.resolved_transfers.items()
        if key not in posting.new_transfers
    ]
    if resolved:
        await session.execute(
            _update_transfer,
            [
                {
                    "transfer_id": transfer.id,
                    "new_status": transfer.status,
                    "new_posted_amount": transfer.posted_amount,
                    "new_resolved_at": transfer.resolved_at,
                }
                for transfer in resolved
            ],
        )
    if posting.entries:
        await session.execute(entries.insert(), posting.entries)


# -- accounts ----------------------------------------------------------------------------


async def insert_account(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(accounts.insert().values(**values))


# Built once per dialect, run with the values as parameters.
_INSERT_ACCOUNT_IF_ABSENT = {
    "postgresql": postgresql.insert(accounts).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(accounts).on_conflict_do_nothing(),
}


async def insert_account_if_absent(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the account unless one with its id exists; True when inserted."""
    statement = _INSERT_ACCOUNT_IF_ABSENT[session.get_bind().dialect.name]
    result = await session.execute(statement, values)
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Built once: constructing `accounts.c.id == value` costs more than running the statement.
_ACCOUNT_BY_ID = select(accounts).where(accounts.c.id == bindparam("account_id"))


async def get_account(session: AsyncSession, account_id: str) -> Row[Any] | None:
    return (await session.execute(_ACCOUNT_BY_ID, {"account_id": account_id})).first()


_ACCOUNT_BY_ID_DIRECT = Query(_ACCOUNT_BY_ID)


async def read_account(reads: DirectReads, account_id: str) -> dict[str, Any] | None:
    """The account's row on the direct read path (no unit of work)."""
    return await reads.one(_ACCOUNT_BY_ID_DIRECT, account_id=account_id)


async def list_accounts(
    session: AsyncSession, currency: str | None, code: int | None, limit: int, cursor: str | None
) -> tuple[Sequence[Row[Any]], str | None]:
    query = select(accounts)
    if currency is not None:
        query = query.where(accounts.c.currency == currency)
    if code is not None:
        query = query.where(accounts.c.code == code)
    return await _page(session, query, accounts.c.created_at, accounts.c.id, limit, cursor)


async def _page(
    session: AsyncSession,
    query: Any,
    time_column: Any,
    id_column: Any,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Row[Any]], str | None]:
    if cursor is not None:
        created, last_id = decode_cursor(cursor, 2)
        after = _cursor_instant(created)
        if not isinstance(last_id, str) or not last_id:
            raise errors.InvalidCursor()
        query = query.where(
            or_(time_column > after, (time_column == after) & (id_column > last_id))
        )
    rows = (await session.execute(query.order_by(time_column, id_column).limit(limit + 1))).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]._mapping
    return rows[:limit], encode_cursor(last[time_column.name].isoformat(), last[id_column.name])


# -- transfers ---------------------------------------------------------------------------


async def get_transfer(session: AsyncSession, transfer_id: str) -> Row[Any] | None:
    return (await session.execute(select(transfers).where(transfers.c.id == transfer_id))).first()


async def list_transfers(
    session: AsyncSession, account_id: str | None, limit: int, cursor: str | None
) -> tuple[Sequence[Row[Any]], str | None]:
    query = select(transfers)
    if account_id is not None:
        # Through the entries' (account_id, id) index: no extra index on the hot insert path.
        touching = select(entries.c.transfer_id).where(entries.c.account_id == account_id)
        query = query.where(transfers.c.id.in_(touching))
    return await _page(session, query, transfers.c.created_at, transfers.c.id, limit, cursor)


async def due_pending_transfers(session: AsyncSession, now: dt.datetime, limit: int) -> list[str]:
    query = (
        select(transfers.c.id)
        .where(transfers.c.status == "pending", transfers.c.expires_at <= now)
        .order_by(transfers.c.expires_at)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


# -- entries and balances ----------------------------------------------------------------


async def list_entries(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> tuple[Sequence[Row[Any]], str | None]:
    query = select(entries).where(entries.c.account_id == account_id)
    if cursor is not None:
        (after,) = decode_cursor(cursor, 1)
        if type(after) is not int or not 0 <= after < 2**63:
            raise errors.InvalidCursor()
        query = query.where(entries.c.id > after)
    rows = (await session.execute(query.order_by(entries.c.id).limit(limit + 1))).all()
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(rows[limit - 1].id)


async def balance_at(session: AsyncSession, account_id: str, at: dt.datetime) -> Row[Any] | None:
    query = (
        select(entries)
        .where(entries.c.account_id == account_id, entries.c.created_at <= at)
        .order_by(entries.c.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()


_BALANCES = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
_HALF = 2**32


async def totals_by_currency(session: AsyncSession) -> list[dict[str, Any]]:
    """Exact per-currency sums of the four balances.

    PostgreSQL sums bigints into numeric. SQLite's integers stop at 2^63-1, which a sum of
    balances can pass, so there each balance is summed as high and low 32-bit halves (each
    sum fits for up to 2^31 accounts) and recombined in Python."""
    if is_postgres(session):
        columns = [func.coalesce(func.sum(accounts.c[name]), 0).label(name) for name in _BALANCES]
    else:
        columns = [
            part
            for name in _BALANCES
            for part in (
                func.coalesce(func.sum(accounts.c[name] // _HALF), 0).label(f"{name}_high"),
                func.coalesce(func.sum(accounts.c[name] % _HALF), 0).label(f"{name}_low"),
            )
        ]
    query = (
        select(accounts.c.currency, *columns)
        .group_by(accounts.c.currency)
        .order_by(accounts.c.currency)
    )
    totals = []
    for row in (await session.execute(query)).all():
        mapping = row._mapping
        total: dict[str, Any] = {"currency": mapping["currency"]}
        for name in _BALANCES:
            if name in mapping:
                total[name] = int(mapping[name])
            else:
                total[name] = int(mapping[f"{name}_high"]) * _HALF + int(mapping[f"{name}_low"])
        totals.append(total)
    return totals
