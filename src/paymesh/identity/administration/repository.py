"""Queries of the admin API. Callers own the transaction."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity.administration.errors import InvalidCursor
from paymesh.identity.models import Client, RefreshToken
from paymesh.kernel.jsonutil import strict_loads


def encode_cursor(created_at: dt.datetime, identifier: str) -> str:
    raw = json.dumps([created_at.isoformat(), identifier]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        values: Any = strict_loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created_at = dt.datetime.fromisoformat(values[0]).astimezone(dt.UTC)
        identifier = values[1]
    except (ValueError, TypeError, IndexError, KeyError, OverflowError):
        raise InvalidCursor() from None
    if not isinstance(identifier, str) or len(values) != 2:
        raise InvalidCursor()
    return created_at, identifier


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
