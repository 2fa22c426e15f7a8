"""Builds the forex service."""

from __future__ import annotations

from pathlib import Path

import structlog

from paymesh.forex.api import router
from paymesh.forex.errors import ProviderError
from paymesh.forex.events import EVENTS
from paymesh.forex.jobs import periodic_jobs
from paymesh.forex.models import kernel_tables, metadata
from paymesh.forex.oanda import OandaRates
from paymesh.forex.providers import EcbReferenceRates, RateProvider, StaticRates
from paymesh.forex.rates import RateBook
from paymesh.forex.service import ForexService
from paymesh.kernel.config import EdgeRoute, ForexSettings
from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec

log = structlog.get_logger("paymesh.forex")


def build_provider(settings: ForexSettings) -> RateProvider:
    """The provider `PAYMESH_FOREX_PROVIDER` names."""
    if settings.provider == "oanda":
        if settings.oanda_api_key is None:
            raise ValueError("PAYMESH_FOREX_PROVIDER=oanda needs PAYMESH_FOREX_OANDA_API_KEY")
        return OandaRates(settings.oanda_base_url, settings.oanda_api_key.get_secret_value())
    if settings.provider == "static":
        return StaticRates(settings.static_rates)
    return EcbReferenceRates()


def _setup(runtime: ServiceRuntime) -> None:
    settings = runtime.settings.forex
    rates = RateBook(
        build_provider(settings), runtime.cache, max_age_seconds=settings.rates_max_age_seconds
    )
    runtime.state["rates"] = rates
    runtime.state["forex"] = ForexService(
        rates,
        runtime.outbox,
        markup_bps=settings.markup_bps,
        quote_ttl_seconds=settings.quote_ttl_seconds,
    )


async def _start(runtime: ServiceRuntime) -> None:
    """Hold rates from the start (the job refreshes them later); a provider that does not
    answer now is not fatal: reads retry, and answer 503 until it does."""
    rates: RateBook = runtime.state["rates"]
    try:
        await rates.refresh()
    except ProviderError as error:
        log.warning("rates_not_loaded_at_start", provider=rates.provider.name, error=str(error))


async def _stop(runtime: ServiceRuntime) -> None:
    rates: RateBook = runtime.state["rates"]
    await rates.provider.aclose()


SPEC = ServiceSpec(
    name="forex",
    title="Forex",
    description="Reference rates, conversions and quotes with a locked rate, used once.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    edge_routes=(
        # Published rates, like a bank's rate board: no token needed.
        EdgeRoute("/v1/forex/rates", policy="public", methods=("GET", "HEAD")),
    ),
    setup=_setup,
    on_start=_start,
    on_stop=_stop,
    periodic_jobs=periodic_jobs,
    events=EVENTS,
)
