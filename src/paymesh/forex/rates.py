"""The rates every reader uses: refreshed from the provider into the shared cache by the
`refresh_rates` job, read from the cache.

Staleness is measured from the last *successful refresh*, not from the date the rates
carry: the ECB publishes once per business day (none at weekends and holidays) and the
offline ECB file ends on the day it was packaged, so the data's own date says little about
whether we are still in touch with the provider. A refresh that fails leaves the last table
in place; once `rates_max_age_seconds` pass without a successful refresh, quotes and
conversions answer 503 `rates_stale`. Every answer states the data's own `date`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from paymesh.forex.errors import DateOutOfRange, ProviderError, RatesStale, RatesUnavailable
from paymesh.forex.providers import RateProvider, RateTable
from paymesh.kernel.cache import Cache
from paymesh.kernel.metrics import FOREX_REFRESHED

log = structlog.get_logger("paymesh.forex.rates")

LATEST_KEY = "forex:rates:latest"
DAY_TTL_SECONDS = 86_400.0
EARLIEST_DAY = dt.date(1999, 1, 4)
"""The euro's first reference rates; no provider we speak has earlier days."""


@dataclass(frozen=True)
class HeldRates:
    table: RateTable
    refreshed_at: float
    """Unix time of the successful refresh that fetched `table`."""


class RateBook:
    def __init__(
        self,
        provider: RateProvider,
        cache: Cache,
        *,
        max_age_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.max_age_seconds = max_age_seconds
        self.clock = clock

    @property
    def _retention_seconds(self) -> float:
        # Kept well past the staleness limit, so old rates read as stale, not as missing.
        return max(self.max_age_seconds * 4, 7 * 86_400.0)

    async def refresh(self) -> RateTable:
        """Fetch the latest table from the provider and share it (the scheduled job)."""
        table = await self.provider.table(None)
        document = {"table": table.to_json(), "refreshed_at": self.clock()}
        await self.cache.set(self._key(), document, self._retention_seconds)
        FOREX_REFRESHED.set(time.time())
        log.info("rates_refreshed", provider=self.provider.name, day=table.day.isoformat())
        return table

    def _key(self) -> str:
        return f"{LATEST_KEY}:{self.provider.name}"

    async def held(self) -> HeldRates:
        """The latest rates held; fetched now when nothing is held yet (first start)."""
        document: Any = await self.cache.get(self._key())
        if document is None:
            try:
                await self.refresh()
            except ProviderError as error:
                log.warning("rates_unavailable", provider=self.provider.name, error=str(error))
                raise RatesUnavailable(
                    detail=f"no rates held and {self.provider.name} did not answer"
                ) from None
            document = await self.cache.get(self._key())
            if document is None:
                raise RatesUnavailable(detail="the rate cache did not keep the rates")
        return HeldRates(RateTable.from_json(document["table"]), float(document["refreshed_at"]))

    async def latest(self) -> RateTable:
        """The latest rates for publishing: stated with their date, even when old."""
        return (await self.held()).table

    async def fresh(self) -> RateTable:
        """The latest rates for pricing: refused when not refreshed recently enough."""
        held = await self.held()
        age = self.clock() - held.refreshed_at
        if age > self.max_age_seconds:
            raise RatesStale(
                detail=f"rates last refreshed from {self.provider.name} {int(age)} s ago "
                f"(limit {int(self.max_age_seconds)} s)",
                refreshed_at=dt.datetime.fromtimestamp(held.refreshed_at, dt.UTC).isoformat(),
            )
        return held.table

    async def on(self, day: dt.date) -> RateTable:
        """The rates of `day`, or of the last business day before it."""
        today = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date()
        if day < EARLIEST_DAY or day > today:
            raise DateOutOfRange(
                detail=f"rates exist from {EARLIEST_DAY.isoformat()} to today "
                f"({today.isoformat()}); {day.isoformat()} is outside"
            )
        key = f"forex:rates:day:{self.provider.name}:{day.isoformat()}"
        document: Any = await self.cache.get(key)
        if document is not None:
            return RateTable.from_json(document)
        try:
            table = await self.provider.table(day)
        except ProviderError as error:
            log.warning("rates_unavailable", provider=self.provider.name, error=str(error))
            raise RatesUnavailable(
                detail=f"{self.provider.name} did not answer for {day.isoformat()}"
            ) from None
        # A past day's rates do not change; today's may still be published later.
        if table.day < today:
            await self.cache.set(key, table.to_json(), DAY_TTL_SECONDS)
        return table
