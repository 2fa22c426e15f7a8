"""Queries of one-time codes. Callers own the transaction.

Every change of a code's state is one conditional UPDATE, so two requests racing on the
same code cannot both use it, nor spend more wrong guesses than it has."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import ColumnElement, CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity.models import OneTimeCode, User


def _rowcount(result: object) -> int:
    return int(cast(CursorResult[object], result).rowcount)


def _open(now: dt.datetime) -> list[ColumnElement[bool]]:
    """The conditions under which a code may still be guessed at."""
    return [
        OneTimeCode.used_at.is_(None),
        OneTimeCode.voided_at.is_(None),
        OneTimeCode.attempts_left > 0,
        OneTimeCode.expires_at > now,
    ]


async def lock_user(session: AsyncSession, user_id: str) -> User | None:
    """The user, locked for this transaction on PostgreSQL: the codes of one user are
    issued one at a time, so the rate limit holds under concurrent requests. (SQLite
    writers already take turns.)"""
    found = await session.execute(select(User).where(User.id == user_id).with_for_update())
    return found.scalar_one_or_none()


async def count_issued_since(session: AsyncSession, user_id: str, since: dt.datetime) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(OneTimeCode)
        .where(OneTimeCode.user_id == user_id)
        .where(OneTimeCode.created_at > since)
    )
    return int(found or 0)


async def void_open(
    session: AsyncSession, user_id: str, purpose: str, now: dt.datetime, reason: str
) -> int:
    """Void the user's codes for `purpose` that could still be used."""
    result = await session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.user_id == user_id)
        .where(OneTimeCode.purpose == purpose)
        .where(OneTimeCode.used_at.is_(None))
        .where(OneTimeCode.voided_at.is_(None))
        .values(voided_at=now, void_reason=reason)
    )
    return _rowcount(result)


async def void(session: AsyncSession, code_id: str, now: dt.datetime, reason: str) -> bool:
    result = await session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.id == code_id)
        .where(OneTimeCode.used_at.is_(None))
        .where(OneTimeCode.voided_at.is_(None))
        .values(voided_at=now, void_reason=reason)
    )
    return _rowcount(result) == 1


async def get(session: AsyncSession, code_id: str, *, fresh: bool = False) -> OneTimeCode | None:
    """The code; `fresh` reads the row again over what the session already holds."""
    query = select(OneTimeCode).where(OneTimeCode.id == code_id)
    if fresh:
        query = query.execution_options(populate_existing=True)
    found = await session.execute(query)
    return found.scalar_one_or_none()


async def use(session: AsyncSession, code_id: str, now: dt.datetime) -> bool:
    """Mark an open code used; False when it was not open (used, void, locked, expired)."""
    result = await session.execute(
        update(OneTimeCode).where(OneTimeCode.id == code_id, *_open(now)).values(used_at=now)
    )
    return _rowcount(result) == 1


async def spend_attempt(session: AsyncSession, code_id: str, now: dt.datetime) -> int | None:
    """Take one attempt from an open code: the attempts left after it, or None when the
    code was not open. The UPDATE holds the row until commit, so the count read back is
    this transaction's own."""
    result = await session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.id == code_id, *_open(now))
        .values(attempts_left=OneTimeCode.attempts_left - 1)
    )
    if _rowcount(result) != 1:
        return None
    left = await session.scalar(select(OneTimeCode.attempts_left).where(OneTimeCode.id == code_id))
    return int(left or 0)
