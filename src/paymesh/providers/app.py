"""Builds the providers service: connectors to external parties (the KYC vendor, the
partner banks)."""

from __future__ import annotations

from pathlib import Path

from paymesh.kernel.config import EdgeRoute
from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec
from paymesh.providers.api import router
from paymesh.providers.connectors.bank import CALLBACK_PREFIX, PartnerBanks
from paymesh.providers.connectors.kyc import CALLBACK_PATH, HttpKycVendor, KycVendor
from paymesh.providers.events import EVENTS
from paymesh.providers.jobs import periodic_jobs
from paymesh.providers.models import kernel_tables, metadata
from paymesh.providers.payouts.api import router as payouts_router
from paymesh.providers.payouts.service import Payouts
from paymesh.providers.service import KycChecks


def _setup(runtime: ServiceRuntime) -> None:
    vendor = HttpKycVendor.from_settings(runtime.settings)
    runtime.state["kyc_vendor"] = vendor
    runtime.state["kyc_checks"] = KycChecks(vendor, runtime.outbox)
    banks = PartnerBanks.from_settings(runtime.settings)
    runtime.state["partner_banks"] = banks
    runtime.state["payouts"] = Payouts(runtime.database, runtime.outbox, banks)


async def _stop(runtime: ServiceRuntime) -> None:
    vendor: KycVendor = runtime.state["kyc_vendor"]
    await vendor.aclose()
    banks: PartnerBanks = runtime.state["partner_banks"]
    await banks.aclose()


SPEC = ServiceSpec(
    name="providers",
    title="Providers",
    description="Connectors to external parties (the KYC vendor, the partner banks that "
    "carry payouts), each verified on the way in.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, payouts_router],
    edge_routes=(
        # The vendor has no token: its HMAC signature is checked by the service itself.
        EdgeRoute(CALLBACK_PATH, policy="public", methods=("POST",), exact=True),
        # Partner banks' status reports (`POST /v1/providers/banks/{bank}/status`, the only
        # POST under this prefix): each is authenticated by its bank's HMAC signature.
        EdgeRoute(CALLBACK_PREFIX, policy="public", methods=("POST",)),
    ),
    setup=_setup,
    on_stop=_stop,
    periodic_jobs=periodic_jobs,
    events=EVENTS,
)
