"""A platform with identity, ledger and wallets behind the gateway; customers with real
identity tokens (registration, then the password grant), operators with development
tokens."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from tests.conftest import http_client

PASSWORD = "plum-orbit-candle-42"
LEGACY = ("demo-legacy", "demo-legacy-secret")
_keys = itertools.count()


def key() -> dict[str, str]:
    """A fresh Idempotency-Key header."""
    return {"idempotency-key": f"test-{next(_keys)}"}


@dataclass
class World:
    platform: Platform
    client: httpx.AsyncClient
    users: dict[str, str] = field(default_factory=dict)

    def staff(self, role: str) -> dict[str, str]:
        token = self.platform.tokens.issue(f"{role}-1", roles=[role])
        return {"authorization": f"Bearer {token}"}

    async def customer(self, username: str) -> dict[str, str]:
        """Register `username` and sign in: their Authorization header (identity's token)."""
        registered = await self.client.post(
            "/v1/identity/users", json={"username": username, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        self.users[username] = registered.json()["id"]
        token = await self.client.post(
            "/oauth2/token",
            data={"grant_type": "password", "username": username, "password": PASSWORD},
            auth=LEGACY,
        )
        assert token.status_code == 200, token.text
        return {"authorization": f"Bearer {token.json()['access_token']}"}

    async def open(self, headers: dict[str, str], currency: str = "USD") -> dict[str, Any]:
        response = await self.client.post(
            "/v1/wallets", json={"currency": currency}, headers=headers | key()
        )
        assert response.status_code == 201, response.text
        wallet: dict[str, Any] = response.json()
        return wallet

    async def deposit(self, wallet_id: str, amount: int) -> httpx.Response:
        return await self.client.post(
            f"/v1/wallets/{wallet_id}/deposits",
            json={"amount": amount, "reference": "test top-up"},
            headers=self.staff("finance") | key(),
        )

    async def balance(self, wallet_id: str) -> dict[str, int]:
        response = await self.client.get(f"/v1/wallets/{wallet_id}", headers=self.staff("ops"))
        assert response.status_code == 200, response.text
        balance: dict[str, int] = response.json()["balance"]
        return balance

    async def hold(
        self, headers: dict[str, str], wallet_id: str, amount: int, seconds: int = 600
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/wallets/{wallet_id}/holds",
            json={"amount": amount, "expires_in_seconds": seconds},
            headers=headers | key(),
        )

    async def events(self, event_type: str) -> list[dict[str, Any]]:
        runtime = self.platform.runtimes["wallets"]
        table = runtime.spec.tables.outbox
        async with runtime.database.transaction() as session:
            rows = await session.execute(
                table.select().where(table.c.type == event_type).order_by(table.c.created_at)
            )
            return [row.envelope["data"] for row in rows]


async def build_world(make_platform: Callable[..., Any], settings: Settings) -> Platform:
    wallets = settings.wallets.model_copy(
        update={"hold_expiry_interval_seconds": 0.1, "recovery_interval_seconds": 0.2}
    )
    ledger = settings.ledger.model_copy(update={"expiry_interval_seconds": 0.1})
    tuned = settings.model_copy(update={"wallets": wallets, "ledger": ledger})
    platform: Platform = await make_platform(
        ["identity", "ledger", "wallets"], settings_override=tuned
    )
    identity = platform.runtimes["identity"]
    assert identity.spec.seed_demo is not None
    await identity.spec.seed_demo(identity)  # the demo-legacy client (password grant)
    return platform


@pytest.fixture
async def world(make_platform: Callable[..., Any], settings: Settings) -> AsyncIterator[World]:
    platform = await build_world(make_platform, settings)
    async with http_client(platform) as client:
        yield World(platform, client)
