"""Every query of the forex service."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.forex.models import Quote


async def add_quote(session: AsyncSession, quote: Quote) -> None:
    session.add(quote)
    await session.flush()


async def get_quote(session: AsyncSession, quote_id: str) -> Quote | None:
    result = await session.execute(select(Quote).where(Quote.id == quote_id))
    return result.scalar_one_or_none()


async def consume_quote(
    session: AsyncSession,
    quote_id: str,
    *,
    now: dt.datetime,
    consumed_by: str,
    reference: str | None,
) -> bool:
    """Mark the quote used if it is still open: one conditional UPDATE, so of concurrent
    consumers (any number of processes) exactly one sees a row changed. On PostgreSQL the
    losers wait for the winner's row lock, then re-check the condition and find it false."""
    result = await session.execute(
        update(Quote)
        .where(Quote.id == quote_id, Quote.consumed_at.is_(None), Quote.expires_at > now)
        .values(consumed_at=now, consumed_by=consumed_by, consumed_reference=reference)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
