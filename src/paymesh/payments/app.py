"""Builds the payments service: P2P and cross-currency payments through risk, a step-up
code, fees and one atomic ledger batch, payouts to partner banks (reserved, sent, posted or
voided), with a timeline, reversals and crash recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.forex.client import HttpForexClient
from paymesh.identity.client import HttpIdentity
from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec
from paymesh.ledger.client import HttpLedgerClient
from paymesh.payments.api import router
from paymesh.payments.consumers import consumers
from paymesh.payments.events import EVENTS
from paymesh.payments.jobs import periodic_jobs
from paymesh.payments.models import kernel_tables, metadata
from paymesh.payments.money import Booking
from paymesh.payments.pricing import DEFAULT_PRICING, PricingTable
from paymesh.payments.reversals import Reversals
from paymesh.payments.service import ADVANCE_AFTER_COMMIT, Payments, Remote
from paymesh.profiles.client import HttpProfiles
from paymesh.providers.client import HttpProviders
from paymesh.risk.client import HttpRiskClient
from paymesh.wallets.client import HttpWallets


def _pricing(runtime: ServiceRuntime) -> PricingTable:
    configured = runtime.settings.payments.pricing
    return (
        DEFAULT_PRICING
        if configured is None
        else PricingTable.model_validate({"rules": configured})
    )


def _check_reservation_timeout(runtime: ServiceRuntime) -> None:
    """A payout's reservation must outlast its bank's wait for a status, or the bank could
    settle a payout whose money went back to the payer."""
    settings = runtime.settings
    longest = max((bank.status_timeout_seconds for bank in settings.providers.banks), default=0.0)
    if settings.payments.payout_reservation_timeout_seconds <= longest:
        raise ValueError(
            "PAYMESH_PAYMENTS_PAYOUT_RESERVATION_TIMEOUT_SECONDS "
            f"({settings.payments.payout_reservation_timeout_seconds}) must exceed every "
            f"partner bank's status_timeout_seconds (the longest is {longest})"
        )


def _setup(runtime: ServiceRuntime) -> None:
    settings = runtime.settings.payments
    _check_reservation_timeout(runtime)
    booking = Booking(None, settings)  # type: ignore[arg-type] # the ledger client comes at start
    payments = Payments(
        runtime.database,
        runtime.outbox,
        None,  # type: ignore[arg-type] # the clients come at start
        booking,
        _pricing(runtime),
        otp_channel=settings.otp_channel,
        crash_at=settings.crash_at,
    )
    runtime.state["booking"] = booking
    runtime.state["payments"] = payments
    runtime.state["reversals"] = Reversals(runtime.database, payments, booking)
    background: set[asyncio.Task[Any]] = set()
    runtime.state["background"] = background

    def advance_after_commit(session: AsyncSession) -> None:
        for payment_id, actor in session.info.pop(ADVANCE_AFTER_COMMIT, []):
            task = asyncio.create_task(payments.advance(payment_id, actor))
            background.add(task)
            task.add_done_callback(background.discard)

    runtime.database.on_commit(advance_after_commit)


async def _start(runtime: ServiceRuntime) -> None:
    names = ("wallets", "risk", "identity", "forex", "profiles", "ledger", "providers")
    clients = {name: runtime.client(name) for name in names}
    runtime.state["http_clients"] = tuple(clients.values())
    ledger = HttpLedgerClient(clients["ledger"])
    payments: Payments = runtime.state["payments"]
    payments.remote = Remote(
        wallets=HttpWallets(clients["wallets"]),
        risk=HttpRiskClient(clients["risk"]),
        identity=HttpIdentity(clients["identity"]),
        forex=HttpForexClient(clients["forex"]),
        profiles=HttpProfiles(clients["profiles"]),
        ledger=ledger,
        providers=HttpProviders(clients["providers"]),
    )
    booking: Booking = runtime.state["booking"]
    booking.ledger = ledger


async def _stop(runtime: ServiceRuntime) -> None:
    for task in list(runtime.state.get("background", ())):
        task.cancel()
    for client in runtime.state.pop("http_clients", ()):
        await client.aclose()


SPEC = ServiceSpec(
    name="payments",
    title="Payments",
    description="P2P and cross-currency payments and payouts to other banks: risk, step-up "
    "codes, fees, one atomic ledger batch each (a reservation posted or voided for payouts), "
    "a timeline, reversals, and recovery after a crash.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    setup=_setup,
    on_start=_start,
    on_stop=_stop,
    consumers=consumers,
    events=EVENTS,
    periodic_jobs=periodic_jobs,
)
