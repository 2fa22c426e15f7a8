"""Queries of the admin API. Callers own the transaction."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity.models import Client, RefreshToken


async def list_clients(
    session: AsyncSession, limit: int, after: tuple[dt.datetime, str] | None
) -> list[Client]:
    statement = select(Client).order_by(Client.created_at, Client.id).limit(limit)
    if after is not None:
        created_at, client_id = after
        statement = statement.where(
            (Client.created_at > created_at)
            | ((Client.created_at == created_at) & (Client.id > client_id))
        )
    return list(await session.scalars(statement))


async def delete_client(session: AsyncSession, client_id: str) -> None:
    await session.execute(delete(Client).where(Client.id == client_id))


async def revoke_client_refresh_tokens(
    session: AsyncSession, client_id: str, now: dt.datetime
) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.client_id == client_id)
        .where(RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
