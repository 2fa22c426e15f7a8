"""Every query of the wallets service. State changes are conditional (`WHERE status = ...`)
so that a request and the recovery job racing on the same row change it once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.pagination import decode_cursor, encode_cursor
from paymesh.wallets.models import Hold, Operation, Wallet

wallets = cast(Table, Wallet.__table__)
holds = cast(Table, Hold.__table__)
operations = cast(Table, Operation.__table__)

OPEN_HOLD_STATUSES = ("placing", "active")


# -- wallets -------------------------------------------------------------------------------


async def insert_wallet(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(wallets.insert().values(**values))


async def get_wallet(session: AsyncSession, wallet_id: str) -> Any:
    return (await session.execute(select(wallets).where(wallets.c.id == wallet_id))).first()


async def wallet_for_request(session: AsyncSession, request_key: str) -> Any:
    query = select(wallets).where(wallets.c.request_key == request_key)
    return (await session.execute(query)).first()


async def open_wallet_in(session: AsyncSession, owner_id: str, currency: str) -> Any:
    query = select(wallets).where(
        wallets.c.owner_id == owner_id,
        wallets.c.currency == currency,
        wallets.c.status != "closed",
    )
    return (await session.execute(query)).first()


async def list_wallets(
    session: AsyncSession, owner_id: str | None, limit: int, cursor: str | None
) -> tuple[Sequence[Row[Any]], str | None]:
    query = select(wallets)
    if owner_id is not None:
        query = query.where(wallets.c.owner_id == owner_id)
    if cursor is not None:
        after, last_id = decode_cursor(cursor)
        query = query.where(
            or_(
                wallets.c.created_at > after,
                (wallets.c.created_at == after) & (wallets.c.id > last_id),
            )
        )
    query = query.order_by(wallets.c.created_at, wallets.c.id).limit(limit + 1)
    rows = (await session.execute(query)).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)


async def set_wallet_status(
    session: AsyncSession, wallet_id: str, status: str, from_statuses: Sequence[str]
) -> bool:
    result = await session.execute(
        update(wallets)
        .where(wallets.c.id == wallet_id, wallets.c.status.in_(from_statuses))
        .values(status=status, updated_at=dt.datetime.now(dt.UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def opening_wallets(
    session: AsyncSession, before: dt.datetime, limit: int
) -> Sequence[Row[Any]]:
    query = (
        select(wallets)
        .where(wallets.c.status == "opening", wallets.c.updated_at < before)
        .order_by(wallets.c.updated_at)
        .limit(limit)
    )
    return (await session.execute(query)).all()


# -- holds ---------------------------------------------------------------------------------


async def insert_hold(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(holds.insert().values(**values))


async def get_hold(session: AsyncSession, hold_id: str) -> Any:
    return (await session.execute(select(holds).where(holds.c.id == hold_id))).first()


async def update_hold(
    session: AsyncSession, hold_id: str, from_statuses: Sequence[str], **values: Any
) -> bool:
    result = await session.execute(
        update(holds)
        .where(holds.c.id == hold_id, holds.c.status.in_(from_statuses))
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def count_open_holds(session: AsyncSession, wallet_id: str) -> int:
    query = select(func.count()).where(
        holds.c.wallet_id == wallet_id, holds.c.status.in_(OPEN_HOLD_STATUSES)
    )
    return int((await session.execute(query)).scalar_one())


async def count_pending_operations(session: AsyncSession, wallet_id: str) -> int:
    query = select(func.count()).where(
        operations.c.wallet_id == wallet_id, operations.c.status == "pending"
    )
    return int((await session.execute(query)).scalar_one())


async def due_holds(session: AsyncSession, now: dt.datetime, limit: int) -> Sequence[Row[Any]]:
    query = (
        select(holds)
        .where(holds.c.status == "active", holds.c.expires_at <= now)
        .order_by(holds.c.expires_at)
        .limit(limit)
    )
    return (await session.execute(query)).all()


# -- operations ----------------------------------------------------------------------------


async def insert_operation(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(operations.insert().values(**values))


async def operation_for_request(session: AsyncSession, request_key: str) -> Any:
    query = select(operations).where(operations.c.request_key == request_key)
    return (await session.execute(query)).first()


async def get_operation(session: AsyncSession, operation_id: str) -> Any:
    query = select(operations).where(operations.c.id == operation_id)
    return (await session.execute(query)).first()


async def finish_operation(
    session: AsyncSession, operation_id: str, status: str, failure_code: str | None = None
) -> bool:
    """pending -> completed | failed, once."""
    result = await session.execute(
        update(operations)
        .where(operations.c.id == operation_id, operations.c.status == "pending")
        .values(status=status, failure_code=failure_code, completed_at=dt.datetime.now(dt.UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def stale_operations(
    session: AsyncSession, before: dt.datetime, limit: int
) -> Sequence[Row[Any]]:
    query = (
        select(operations)
        .where(operations.c.status == "pending", operations.c.created_at < before)
        .order_by(operations.c.created_at)
        .limit(limit)
    )
    return (await session.execute(query)).all()
