"""Builds the wallets service."""

from __future__ import annotations

from pathlib import Path

from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec
from paymesh.ledger.client import HttpLedgerClient
from paymesh.wallets.api import router
from paymesh.wallets.demo import seed_demo, start_demo
from paymesh.wallets.events import EVENTS
from paymesh.wallets.holders import HolderNames, NoHolderNames, ProfilesHolderNames
from paymesh.wallets.jobs import periodic_jobs
from paymesh.wallets.models import kernel_tables, metadata
from paymesh.wallets.operations import Operations
from paymesh.wallets.service import WalletsService


def _holder_names(runtime: ServiceRuntime) -> HolderNames:
    """Profiles when this deployment has it (in process, or at a configured URL)."""
    hosted = "profiles" in runtime.directory.local
    if hosted or runtime.settings.service("profiles").base_url:
        return ProfilesHolderNames(runtime.client("profiles"))
    return NoHolderNames()


def _setup(runtime: ServiceRuntime) -> None:
    ledger = HttpLedgerClient(lambda: runtime.client("ledger"))
    wallets = WalletsService(ledger, runtime.outbox, _LazyHolders(runtime))
    runtime.state["ledger_client"] = ledger
    runtime.state["wallets"] = wallets
    runtime.state["operations"] = Operations(
        wallets, ledger, runtime.outbox, runtime.settings.wallets.max_hold_seconds
    )


class _LazyHolders:
    """Picks the holder-name source on first use: the directory knows which services are
    hosted only once the platform has built every runtime."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.names: HolderNames | None = None

    async def legal_name(self, user_id: str) -> str | None:
        if self.names is None:
            self.names = _holder_names(self.runtime)
        return await self.names.legal_name(user_id)


SPEC = ServiceSpec(
    name="wallets",
    title="Wallets",
    description="Customer wallets on ledger accounts: deposits, withdrawals, holds, "
    "freezing and account validation.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    setup=_setup,
    periodic_jobs=periodic_jobs,
    seed_demo=seed_demo,
    on_start=start_demo,
    events=EVENTS,
)
