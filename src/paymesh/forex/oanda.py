"""An OANDA-style exchange-rates provider over HTTP.

The shape follows OANDA's Exchange Rates API (v2): `GET /v2/rates/spot.json?base=EUR`
(optionally `&date_time=YYYY-MM-DD` for a past day) with `Authorization: Bearer <key>`,
answering `{"meta": {...}, "quotes": [{"base_currency", "quote_currency", "bid", "ask",
"midpoint", "date_time"}, ...]}`. We price on the midpoint. Numbers are read as decimals
whether the API sends them as strings or as JSON numbers: never through a float.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import structlog

from paymesh.forex.errors import DateOutOfRange, ProviderError
from paymesh.forex.providers import ANCHOR, RateTable, quoted_currencies
from paymesh.kernel.http import shared_tls_context

log = structlog.get_logger("paymesh.forex.oanda")

SPOT_PATH = "/v2/rates/spot.json"


class OandaRates:
    name = "oanda"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_seconds),
            transport=transport,
            verify=shared_tls_context(),
            headers={"authorization": f"Bearer {api_key}", "accept": "application/json"},
        )

    async def table(self, on: dt.date | None = None) -> RateTable:
        params: dict[str, str] = {"base": ANCHOR}
        if on is not None:
            params["date_time"] = on.isoformat()
        try:
            response = await self._http.get(SPOT_PATH, params=params)
        except httpx.HTTPError as error:
            raise ProviderError(f"{self.name}: {error.__class__.__name__}") from error
        if response.status_code == 404 and on is not None:
            raise DateOutOfRange(detail=f"{self.name} has no rates for {on.isoformat()}")
        if response.status_code != 200:
            log.warning("rate_provider_refused", provider=self.name, status=response.status_code)
            raise ProviderError(f"{self.name} answered {response.status_code}")
        return self._parse(response.content)

    def _parse(self, content: bytes) -> RateTable:
        try:
            document = json.loads(content, parse_float=Decimal)
            quotes: list[dict[str, Any]] = document["quotes"]
            rates: dict[str, Decimal] = {}
            days = set()
            for quote in quotes:
                if quote["base_currency"] != ANCHOR:
                    continue
                rates[str(quote["quote_currency"])] = Decimal(str(quote["midpoint"]))
                days.add(dt.date.fromisoformat(str(quote["date_time"])[:10]))
        except (ValueError, KeyError, TypeError, InvalidOperation) as error:
            raise ProviderError(f"{self.name}: unreadable answer ({error!r})") from error
        if not rates or len(days) != 1:
            raise ProviderError(f"{self.name}: no quotes, or quotes of several days")
        return RateTable(self.name, days.pop(), quoted_currencies(rates))

    async def aclose(self) -> None:
        await self._http.aclose()
