"""Builds the providers service: connectors to external parties (the KYC vendor now)."""

from __future__ import annotations

from pathlib import Path

from paymesh.kernel.config import EdgeRoute
from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec
from paymesh.providers.api import router
from paymesh.providers.connectors.kyc import CALLBACK_PATH, HttpKycVendor, KycVendor
from paymesh.providers.jobs import periodic_jobs
from paymesh.providers.models import kernel_tables, metadata
from paymesh.providers.service import KycChecks


def _setup(runtime: ServiceRuntime) -> None:
    vendor = HttpKycVendor.from_settings(runtime.settings)
    runtime.state["kyc_vendor"] = vendor
    runtime.state["kyc_checks"] = KycChecks(vendor, runtime.outbox)


async def _stop(runtime: ServiceRuntime) -> None:
    vendor: KycVendor = runtime.state["kyc_vendor"]
    await vendor.aclose()


SPEC = ServiceSpec(
    name="providers",
    title="Providers",
    description="Connectors to external parties (the KYC vendor; PSPs and the partner bank "
    "next), each verified on the way in.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    edge_routes=(
        # The vendor has no token: its HMAC signature is checked by the service itself.
        EdgeRoute(CALLBACK_PATH, policy="public", methods=("POST",), exact=True),
    ),
    setup=_setup,
    on_stop=_stop,
    periodic_jobs=periodic_jobs,
)
