"""Factories for the self-service and admin tests: registered users and their tokens."""

from __future__ import annotations

from typing import Any

import httpx

from paymesh.platform import Platform

STRONG_PASSWORD = "plum-orbit-candle-42"


async def register(client: httpx.AsyncClient, username: str = "carol", **fields: Any) -> Any:
    body = {"username": username, "password": STRONG_PASSWORD, **fields}
    response = await client.post("/v1/identity/users", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def bearer(platform: Platform, subject: str, roles: tuple[str, ...] = ()) -> dict[str, str]:
    """Authorization header with a platform token for `subject`."""
    return {"authorization": f"Bearer {platform.tokens.issue(subject, roles=roles)}"}


async def signed_in(platform: Platform, client: httpx.AsyncClient, username: str) -> Any:
    """Register `username`; the user and an Authorization header for them."""
    user = await register(client, username)
    return user, bearer(platform, user["id"], tuple(user["roles"]))


async def outbox_types(platform: Platform) -> list[str]:
    runtime = platform.runtimes["identity"]
    table = runtime.spec.tables.outbox
    async with runtime.database.transaction() as session:
        rows = await session.execute(table.select().order_by(table.c.created_at))
        return [row.type for row in rows]


async def outbox_events(platform: Platform, event_type: str) -> list[Any]:
    """The `data` of the outbox events of `event_type`, oldest first."""
    runtime = platform.runtimes["identity"]
    table = runtime.spec.tables.outbox
    async with runtime.database.transaction() as session:
        rows = await session.execute(
            table.select().where(table.c.type == event_type).order_by(table.c.created_at)
        )
        return [row.envelope["data"] for row in rows]
