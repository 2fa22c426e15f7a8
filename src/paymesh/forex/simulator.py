"""A local simulator of the OANDA-style rates API (`oanda.py`), for tests and demos.

A small ASGI app: `GET /v2/rates/spot.json?base=EUR[&date_time=YYYY-MM-DD]` with
`Authorization: Bearer <key>`; a missing or wrong key is 401, as the real API does. Its
rates are the ECB reference rates of the day (or a table given at construction), with a
bid/ask spread around them and the numbers sent as strings.

Serve it with uvicorn: `uvicorn --factory paymesh.forex.simulator:create_app`
(key `PAYMESH_FOREX_OANDA_API_KEY`, default `simulator-key`).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
from collections.abc import Mapping
from decimal import Decimal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from paymesh.forex.errors import DateOutOfRange
from paymesh.forex.oanda import SPOT_PATH
from paymesh.forex.providers import ANCHOR, EcbReferenceRates, RateTable

DEFAULT_KEY = "simulator-key"
HALF_SPREAD = Decimal("0.0002")


class RatesSimulator:
    def __init__(self, api_key: str, rates: Mapping[str, str] | None = None) -> None:
        self.api_key = api_key
        self.fixed = {code: Decimal(rate) for code, rate in (rates or {}).items()}
        self.requests = 0
        self.ecb = EcbReferenceRates()

    def authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )

    async def spot(self, request: Request) -> JSONResponse:
        self.requests += 1
        if not self.authorized(request):
            return JSONResponse({"code": 401, "message": "Invalid API key"}, status_code=401)
        if request.query_params.get("base", ANCHOR) != ANCHOR:
            return JSONResponse({"code": 400, "message": "base must be EUR"}, status_code=400)
        try:
            raw = request.query_params.get("date_time")
            day = dt.date.fromisoformat(raw) if raw else None
            table = await self._table(day)
        except (ValueError, DateOutOfRange) as error:
            return JSONResponse({"code": 404, "message": str(error)}, status_code=404)
        return JSONResponse(self._document(table))

    async def _table(self, day: dt.date | None) -> RateTable:
        if self.fixed:
            return RateTable("simulator", day or dt.datetime.now(dt.UTC).date(), self.fixed)
        return await self.ecb.table(day)

    @staticmethod
    def _document(table: RateTable) -> dict[str, object]:
        quotes = []
        for code, mid in sorted(table.per_eur.items()):
            spread = mid * HALF_SPREAD
            quotes.append(
                {
                    "base_currency": ANCHOR,
                    "quote_currency": code,
                    "bid": str(mid - spread),
                    "ask": str(mid + spread),
                    "midpoint": str(mid),
                    "date_time": f"{table.day.isoformat()}T00:00:00Z",
                }
            )
        return {"meta": {"effective_params": {"base": ANCHOR}}, "quotes": quotes}

    def app(self) -> Starlette:
        return Starlette(routes=[Route(SPOT_PATH, self.spot, methods=["GET"])])


def create_app() -> Starlette:
    key = os.environ.get("PAYMESH_FOREX_OANDA_API_KEY", DEFAULT_KEY)
    return RatesSimulator(key).app()
