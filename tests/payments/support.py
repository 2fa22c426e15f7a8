"""The whole platform as a paying customer meets it: every service served by uvicorn on a
loopback port, each request through the gateway with identity's own tokens (customers
registered and signed in, staff users, a `service` client), the KYC vendor simulator on
another port; notifications' catcher and SMS simulator receive the step-up codes.

Risk runs a rule set of the tests' own, so each path is chosen by the amount:
- over USD 1,000.00: 60 points → `step_up` (a one-time code);
- exactly USD 777.00: `review` (a compliance officer decides);
- exactly USD 666.00: `block`;
- anything else: `allow`.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from paymesh.kernel.config import LevelLimits, Settings
from paymesh.platform import SERVICE_MODULES, Platform
from paymesh.providers.simulators.kyc import KycSimulator
from tests import tokens
from tests.conftest import _drop_schemas
from tests.notifications.support import eventually
from tests.profiles.support import loopback_socket, serving, url_of, with_providers

SERVICES = list(SERVICE_MODULES)
PASSWORD = "plum-orbit-candle-42"
LIMITS = {
    level: LevelLimits(per_transaction=10**12, daily=10**12, monthly=10**12)
    for level in ("none", "basic", "full")
}
RULES = {
    "description": "Payments tests: the amount picks the path",
    "rules": [
        {
            "name": "large",
            "description": "Over USD 1,000",
            "condition": "amount_usd > 100000",
            "points": 60,
        },
        {
            "name": "review_amount",
            "description": "USD 777.00 goes to review",
            "condition": "amount_usd == 77700",
            "points": 0,
            "decision": "review",
        },
        {
            "name": "block_amount",
            "description": "USD 666.00 is blocked",
            "condition": "amount_usd == 66600",
            "points": 0,
            "decision": "block",
        },
    ],
}
_numbers = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_numbers)}"


@dataclass
class Customer:
    id: str
    username: str
    phone: str
    headers: dict[str, str]
    wallets: dict[str, str] = field(default_factory=dict)


@dataclass
class PaymentsWorld:
    platform: Platform
    http: httpx.AsyncClient
    service: dict[str, str] = field(default_factory=dict)
    staff: dict[str, dict[str, str]] = field(default_factory=dict)

    async def password_token(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        return await tokens.password_token(self.http, username, password)

    async def customer(self, *currencies: str, funds: int = 0) -> Customer:
        """A registered customer with a wallet per currency (the first funded)."""
        username = unique("payer")
        phone = "+1415555" + f"{next(_numbers) % 10000:04d}".replace("0000", "0001")
        registered = await self.http.post(
            "/v1/identity/users",
            json={
                "username": username,
                "password": PASSWORD,
                "email": f"{username}@example.org",
                "phone": phone,
            },
        )
        assert registered.status_code == 201, registered.text
        customer = Customer(
            registered.json()["id"], username, phone, await self.password_token(username)
        )
        for currency in currencies or ("USD",):
            opened = await self.http.post(
                "/v1/wallets",
                json={"currency": currency},
                headers=customer.headers | {"idempotency-key": unique("w")},
            )
            assert opened.status_code == 201, opened.text
            customer.wallets[currency] = opened.json()["id"]
        if funds:
            await self.fund(customer.wallets[(currencies or ("USD",))[0]], funds)
        return customer

    async def fund(self, wallet_id: str, amount: int) -> None:
        deposit = await self.http.post(
            f"/v1/wallets/{wallet_id}/deposits",
            json={"amount": amount, "reference": "test funding"},
            headers=self.staff["finance"] | {"idempotency-key": unique("d")},
        )
        assert deposit.status_code == 201, deposit.text

    async def balance(self, customer: Customer, currency: str = "USD") -> int:
        wallet = await self.http.get(
            f"/v1/wallets/{customer.wallets[currency]}", headers=customer.headers
        )
        assert wallet.status_code == 200, wallet.text
        available: int = wallet.json()["balance"]["available"]
        return available

    async def pay(
        self,
        payer: Customer,
        payee: Customer,
        amount: int,
        *,
        currency: str = "USD",
        key: str | None = None,
        **fields: Any,
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "type": fields.pop("type", "p2p"),
            "source_wallet_id": payer.wallets[currency],
            "destination": fields.pop(
                "destination", {"wallet_id": payee.wallets[fields.pop("to_currency", currency)]}
            ),
            "amount": amount,
            "currency": currency,
            **fields,
        }
        return await self.http.post(
            "/v1/payments",
            json=body,
            headers=payer.headers | {"idempotency-key": key or unique("pay-")},
        )

    def code_sent_to(self, phone: str) -> str:
        """The latest one-time code the SMS simulator received for `phone`."""
        simulator = self.platform.root.state.sms_simulator
        bodies = [m["body"] for m in simulator.messages if m["to"] == phone and "code" in m["body"]]
        assert bodies, f"no code sent to {phone}"
        found = re.search(r"code is (\d{6})", bodies[-1])
        assert found is not None, bodies[-1]
        return found.group(1)

    async def wait_for_code(self, phone: str, count: int = 1) -> str:
        simulator = self.platform.root.state.sms_simulator

        async def sent() -> bool:
            return (
                len([m for m in simulator.messages if m["to"] == phone and "code" in m["body"]])
                >= count
            )

        await eventually(sent)
        return self.code_sent_to(phone)

    async def trial_balance_holds(self) -> None:
        balance = await self.http.get("/v1/ledger/trial-balance", headers=self.service)
        assert balance.status_code == 200, balance.text
        assert balance.json()["balanced"] is True, balance.text


def payments_settings(
    base: Settings, origin: str, vendor_url: str, *, pricing: tuple[dict[str, Any], ...] = ()
) -> Settings:
    profiles = base.profiles.model_copy(update={"limits": LIMITS})
    payments = base.payments.model_copy(
        update={
            "pricing": [
                {"type": "p2p", "currency": "USD", "basis_points": 100, "fixed": 25},
                {"type": "cross_currency", "currency": "*", "basis_points": 25},
                *pricing,
            ],
            "recovery_after_seconds": 2.0,
            "recovery_interval_seconds": 0.5,
        }
    )
    configured = base.model_copy(
        update={"profiles": profiles, "payments": payments, "public_url": origin}
    )
    return with_providers(configured, kyc_vendor_url=vendor_url, kyc_simulator_delay_seconds=0.02)


async def _rules(world: PaymentsWorld, rules: dict[str, Any]) -> None:
    created = await world.http.post("/v1/risk/rulesets", json=rules, headers=world.staff["admin"])
    assert created.status_code == 201, created.text
    version = created.json()["version"]
    activated = await world.http.post(
        f"/v1/risk/rulesets/{version}/activate", headers=world.staff["admin"]
    )
    assert activated.status_code == 200, activated.text


async def payments_world(
    settings: Settings,
    postgres_database: str | None,
    *,
    pricing: tuple[dict[str, Any], ...] = (),
    rules: dict[str, Any] = RULES,
) -> AsyncIterator[PaymentsWorld]:
    platform_socket, vendor_socket = loopback_socket(), loopback_socket()
    configured = payments_settings(
        settings, url_of(platform_socket), url_of(vendor_socket), pricing=pricing
    )
    simulator = KycSimulator.from_settings(configured)
    platform = Platform(configured, SERVICES)
    if postgres_database:
        await _drop_schemas(postgres_database, SERVICES)
    await platform.migrate()
    await platform.start()
    try:
        for name in ("identity", "ledger", "risk"):  # legacy client; FX pools; the UN list
            runtime = platform.runtimes[name]
            assert runtime.spec.seed_demo is not None
            await runtime.spec.seed_demo(runtime)
        async with (
            serving(simulator.app(), vendor_socket, lifespan="on"),
            serving(platform, platform_socket),
            httpx.AsyncClient(base_url=url_of(platform_socket), timeout=60) as http,
        ):
            world = PaymentsWorld(platform, http)
            world.service = await tokens.service_token(platform, world.http)
            world.staff = await tokens.staff_tokens(
                platform, world.http, ("ops", "compliance", "admin", "finance"), unique
            )
            await _rules(world, rules)
            yield world
    finally:
        await platform.stop()
        if postgres_database:
            await _drop_schemas(postgres_database, SERVICES)
