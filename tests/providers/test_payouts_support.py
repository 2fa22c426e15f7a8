"""The payout tests' world (no tests here): the platform's providers service served on a
loopback port and the partner-bank simulator on another, over real HTTP both ways (our
pacs.008 to the bank, its signed pacs.002 callbacks to the platform's public route).

On teardown every pacs.008 the connector stored (what it sent) is validated against the
official XSD again, so no test lets an invalid message through unseen."""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from paymesh.kernel.config import Settings
from paymesh.kernel.config.banks import PartnerBankSettings
from paymesh.platform import Platform
from paymesh.providers.connectors.bank import callback_path
from paymesh.providers.iso20022 import parse_pacs008
from paymesh.providers.models import PayoutInstruction
from paymesh.providers.simulators.bank import build_app as build_bank_simulator
from paymesh.providers.simulators.bank import uvicorn_tls_options
from tests.profiles.support import eventually, loopback_socket, outbox, service, serving, url_of

BANK = "test-bank"
BANK_BIC = "PMSHDEFFXXX"
CALLBACK_SECRET = "partner-bank-callback-secret-for-tests"
DEBTOR = {"name": "Paymesh Payouts Ltd", "account": "DE02120300000000202051"}
# Valid IBANs whose last four characters script the simulator's outcome.
SETTLES = "DE47370400440532011234"
REJECTS_AC01 = "DE67370400440532010001"
REJECTS_AC04 = "DE40370400440532010002"
NEVER_ANSWERS = "DE13370400440532010003"
SETTLES_LATER = "DE83370400440532010004"
UNKNOWN_ACCOUNT = "DE45370400440532010009"  # the simulator holds no account ending 0009
STATUS_TIMEOUT_SECONDS = 30.0


def bank_settings(base_url: str, **fields: Any) -> PartnerBankSettings:
    values: dict[str, Any] = {
        "name": BANK,
        "base_url": base_url,
        "bic": BANK_BIC,
        "currencies": ["EUR", "GBP"],
        "countries": ["DE", "FR", "GB", "NL"],
        "callback_secret": SecretStr(CALLBACK_SECRET),
        "timeout_seconds": 5.0,
        "status_timeout_seconds": STATUS_TIMEOUT_SECONDS,
        "poll_interval_seconds": 30.0,
    }
    values.update(fields)
    return PartnerBankSettings(**values)


def configured(
    settings: Settings, origin: str, bank: PartnerBankSettings, **simulator: Any
) -> Settings:
    providers = settings.providers
    bank_simulator = providers.bank_simulator.model_copy(
        update={
            "callback_url": origin + callback_path(BANK),
            "callback_secret": SecretStr(CALLBACK_SECRET),
            "settle_delay_seconds": 0.3,
            **simulator,
        }
    )
    updated = providers.model_copy(update={"banks": [bank], "bank_simulator": bank_simulator})
    return settings.model_copy(update={"public_url": origin, "providers": updated})


@dataclass
class PayoutWorld:
    platform: Platform
    http: httpx.AsyncClient
    """On the platform's origin, through the gateway."""
    bank: httpx.AsyncClient
    """On the simulator (its admin view: what the bank received)."""
    headers: dict[str, str]
    """A service caller's (payments')."""


@dataclass(frozen=True)
class BankTls:
    """The simulator served over TLS, asking for a client certificate signed by `ca`."""

    ca: Path
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path

    def simulator_fields(self) -> dict[str, Any]:
        return {
            "tls_certificate": self.server_certificate,
            "tls_private_key": self.server_key,
            "tls_client_ca": self.ca,
        }

    def bank_fields(self) -> dict[str, Any]:
        return {
            "ca_certificate": self.ca,
            "client_certificate": self.client_certificate,
            "client_private_key": self.client_key,
        }

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_certificate), str(self.client_key))
        return context


async def serve_world(
    make_platform: Callable[..., Any],
    settings: Settings,
    *,
    bank_fields: dict[str, Any] | None = None,
    simulator_fields: dict[str, Any] | None = None,
    tls: BankTls | None = None,
    run_workers: bool = True,
) -> AsyncIterator[PayoutWorld]:
    platform_socket, bank_socket = loopback_socket(), loopback_socket()
    origin = url_of(platform_socket)
    bank_url = url_of(bank_socket)
    bank_fields, simulator_fields = dict(bank_fields or {}), dict(simulator_fields or {})
    if tls is not None:
        bank_url = bank_url.replace("http://", "https://")
        simulator_fields |= tls.simulator_fields()
        bank_fields = tls.bank_fields() | bank_fields
    world_settings = configured(
        settings, origin, bank_settings(bank_url, **bank_fields), **simulator_fields
    )
    simulator = build_bank_simulator(world_settings)
    tls_options = uvicorn_tls_options(world_settings.providers.bank_simulator)
    async with serving(simulator, bank_socket, lifespan="on", **tls_options):
        platform: Platform = await make_platform(
            ["providers"], settings_override=world_settings, run_workers=run_workers
        )
        verify: ssl.SSLContext | bool = True if tls is None else tls.client_context()
        async with (
            serving(platform, platform_socket),
            httpx.AsyncClient(base_url=origin, timeout=30) as client,
            httpx.AsyncClient(base_url=bank_url, timeout=30, verify=verify) as bank,
        ):
            yield PayoutWorld(platform, client, bank, service(platform, "payments"))
            await assert_every_message_valid(platform)
        # The platform's connections to the bank close before the bank stops: a TLS server
        # would otherwise wait for them on shutdown.
        await platform.runtimes["providers"].state["partner_banks"].aclose()


@pytest.fixture
async def payout_world(
    make_platform: Callable[..., Any], settings: Settings
) -> AsyncIterator[PayoutWorld]:
    async for world in serve_world(make_platform, settings):
        yield world


async def assert_every_message_valid(platform: Platform) -> None:
    runtime = platform.runtimes["providers"]
    async with runtime.database.transaction() as session:
        messages = list((await session.execute(select(PayoutInstruction.message))).scalars())
    for message in messages:
        parse_pacs008(message.encode())  # raises Iso20022Invalid


def payout_body(payment_id: str, iban: str = SETTLES, **fields: Any) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "amount": 12_345,
        "currency": "EUR",
        "debtor": DEBTOR,
        "beneficiary": {
            "name": "Erika Mustermann",
            "iban": iban,
            "bic": "COBADEFFXXX",
            "country": "DE",
            "address": ["Heidestrasse 17", "51147 Koeln"],
        },
        "purpose": "SUPP",
        "remittance_info": "Invoice 2026-114",
        **fields,
    }


async def submit(world: PayoutWorld, body: dict[str, Any]) -> httpx.Response:
    return await world.http.post("/v1/providers/payouts", json=body, headers=world.headers)


async def payout_of(world: PayoutWorld, payment_id: str) -> dict[str, Any]:
    response = await world.http.get(f"/v1/providers/payouts/{payment_id}", headers=world.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def payout_reaches(
    world: PayoutWorld, payment_id: str, status: str, within_seconds: float = 15.0
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        payout = await payout_of(world, payment_id)
        return payout if payout["status"] == status else None

    return await eventually(reached, within_seconds)


async def payout_events(world: PayoutWorld) -> list[dict[str, Any]]:
    return await outbox(world.platform, "providers", "providers.payout.")


async def bank_instructions(world: PayoutWorld) -> list[dict[str, Any]]:
    response = await world.bank.get("/_admin/instructions")
    assert response.status_code == 200, response.text
    body = response.json()
    return list(body["instructions"] if isinstance(body, dict) else body)


def signed(
    body: bytes, timestamp: int | None = None, secret: str = CALLBACK_SECRET
) -> dict[str, str]:
    """Headers the bank would send (written here independently of the simulator)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"content-type": "application/xml", "x-bank-signature": f"t={stamp},v1={digest}"}
