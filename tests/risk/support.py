"""A risk platform as a client meets it: identity, profiles, providers, forex and risk
served by uvicorn on a loopback port, every request through the gateway with identity's
own tokens (a `service` client's client-credentials token for evaluations, staff users'
password-grant tokens, customers who register and sign in); the KYC vendor simulator on
another port, so a customer can really become verified."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from paymesh.kernel.config import LevelLimits, Settings
from paymesh.platform import Platform
from paymesh.providers.simulators.kyc import KycSimulator
from tests import tokens
from tests.conftest import _drop_schemas
from tests.profiles.support import (
    eventually,
    kyc_body,
    loopback_socket,
    serving,
    url_of,
    with_providers,
)

SERVICES = ["identity", "profiles", "providers", "forex", "risk"]
PASSWORD = "plum-orbit-candle-42"
# Limits wide enough that the scoring rules can be reached without tripping a limit
# (USD cents); tests of the limits use them as they are.
LIMITS = {
    "none": LevelLimits(per_transaction=1_000_000, daily=2_000_000, monthly=5_000_000),
    "basic": LevelLimits(per_transaction=1_500_000, daily=3_000_000, monthly=6_000_000),
    "full": LevelLimits(per_transaction=2_000_000, daily=5_000_000, monthly=10_000_000),
}
_numbers = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_numbers)}"


def risk_settings(base: Settings) -> Settings:
    profiles = base.profiles.model_copy(update={"limits": LIMITS})
    forex = base.forex.model_copy(update={"provider": "static"})
    return base.model_copy(update={"profiles": profiles, "forex": forex})


@dataclass
class RiskWorld:
    platform: Platform
    http: httpx.AsyncClient
    simulator: KycSimulator
    service: dict[str, str] = field(default_factory=dict)
    staff: dict[str, dict[str, str]] = field(default_factory=dict)

    async def password_token(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        return await tokens.password_token(self.http, username, password)

    async def customer(
        self, *, verified: bool = False, **fields: Any
    ) -> tuple[str, dict[str, str]]:
        """A registered customer (id, headers); `verified` runs the real KYC flow."""
        username = unique("cust")
        registered = await self.http.post(
            "/v1/identity/users", json={"username": username, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        headers = await self.password_token(username)
        if verified:
            submitted = await self.http.post(
                "/v1/profiles/me/kyc", json=kyc_body("P12345678", **fields), headers=headers
            )
            assert submitted.status_code == 202, submitted.text

            async def verified_now() -> bool:
                profile = await self.http.get("/v1/profiles/me", headers=headers)
                return bool(profile.json()["kyc"]["status"] == "verified")

            await eventually(verified_now)
        return registered.json()["id"], headers

    async def evaluate(self, customer_id: str, amount: int, **fields: Any) -> httpx.Response:
        headers = self.service | fields.pop("headers", {})
        body = {
            "transaction_id": fields.pop("transaction_id", unique("pay_")),
            "customer_id": customer_id,
            "type": fields.pop("type", "p2p"),
            "amount": amount,
            "currency": fields.pop("currency", "USD"),
            **fields,
        }
        return await self.http.post("/v1/risk/evaluate", json=body, headers=headers)

    async def events(self, event_type: str) -> list[dict[str, Any]]:
        runtime = self.platform.runtimes["risk"]
        table = runtime.spec.tables.outbox
        async with runtime.database.transaction() as session:
            rows = await session.execute(
                table.select().where(table.c.type == event_type).order_by(table.c.created_at)
            )
            return [row.envelope["data"] for row in rows]


async def risk_world(settings: Settings, postgres_database: str | None) -> AsyncIterator[RiskWorld]:
    """Start everything; yield the world; stop and drop it."""
    platform_socket, vendor_socket = loopback_socket(), loopback_socket()
    origin = url_of(platform_socket)
    configured = with_providers(
        risk_settings(settings).model_copy(update={"public_url": origin}),
        kyc_vendor_url=url_of(vendor_socket),
        kyc_simulator_delay_seconds=0.02,
    )
    simulator = KycSimulator.from_settings(configured)
    platform = Platform(configured, SERVICES)
    if postgres_database:
        await _drop_schemas(postgres_database, SERVICES)
    await platform.migrate()
    await platform.start()
    try:
        for name in ("identity", "risk"):  # the legacy client; the UN list
            runtime = platform.runtimes[name]
            assert runtime.spec.seed_demo is not None
            await runtime.spec.seed_demo(runtime)
        async with (
            serving(simulator.app(), vendor_socket, lifespan="on"),
            serving(platform, platform_socket),
            httpx.AsyncClient(base_url=origin, timeout=30) as http,
        ):
            world = RiskWorld(platform, http, simulator)
            world.service = await tokens.service_token(platform, world.http)
            world.staff = await tokens.staff_tokens(
                platform, world.http, ("ops", "compliance", "admin", "finance"), unique
            )
            yield world
    finally:
        await platform.stop()
        if postgres_database:
            await _drop_schemas(postgres_database, SERVICES)
