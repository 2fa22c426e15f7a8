"""Queries of self-service accounts and user administration. Callers own the transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity.models import RecoveryCode, RefreshToken, TotpFactor, User, UserRole


def _rowcount(result: object) -> int:
    return int(cast(CursorResult[object], result).rowcount)


async def revoke_user_refresh_tokens(session: AsyncSession, user_id: str, now: dt.datetime) -> int:
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id)
        .where(RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return _rowcount(result)


async def get_totp(session: AsyncSession, user_id: str) -> TotpFactor | None:
    return await session.get(TotpFactor, user_id)


async def delete_totp(session: AsyncSession, user_id: str) -> None:
    await session.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id))
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


async def replace_recovery_codes(
    session: AsyncSession, user_id: str, rows: Sequence[RecoveryCode]
) -> None:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    session.add_all(rows)
    await session.flush()


async def use_recovery_code(
    session: AsyncSession, user_id: str, code_hash: str, now: dt.datetime
) -> bool:
    """Mark an unused recovery code used; False when there is none with this hash."""
    result = await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id)
        .where(RecoveryCode.code_hash == code_hash)
        .where(RecoveryCode.used_at.is_(None))
        .values(used_at=now)
    )
    return _rowcount(result) == 1


async def list_users(
    session: AsyncSession, limit: int, after: tuple[dt.datetime, str] | None
) -> list[User]:
    """Users oldest first, `limit` of them after the (created_at, id) position."""
    statement = select(User).order_by(User.created_at, User.id).limit(limit)
    if after is not None:
        created_at, user_id = after
        statement = statement.where(
            (User.created_at > created_at) | ((User.created_at == created_at) & (User.id > user_id))
        )
    return list(await session.scalars(statement))


async def roles_of(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {user_id: [] for user_id in user_ids}
    if not user_ids:
        return found
    rows = await session.execute(
        select(UserRole.user_id, UserRole.role)
        .where(UserRole.user_id.in_(user_ids))
        .order_by(UserRole.role)
    )
    for user_id, role in rows:
        found[user_id].append(role)
    return found


async def set_roles(
    session: AsyncSession, user_id: str, roles: Sequence[str], now: dt.datetime
) -> None:
    await session.execute(delete(UserRole).where(UserRole.user_id == user_id))
    session.add_all(UserRole(user_id=user_id, role=role, created_at=now) for role in roles)
    await session.flush()


async def remove_role(session: AsyncSession, user_id: str, role: str) -> None:
    await session.execute(
        delete(UserRole).where(UserRole.user_id == user_id).where(UserRole.role == role)
    )


async def members_of(session: AsyncSession, role: str) -> list[User]:
    found = await session.scalars(
        select(User)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == role)
        .order_by(User.username)
    )
    return list(found)
