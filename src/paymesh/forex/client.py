"""How other services use forex: the `ForexClient` protocol and its HTTP implementation.

Payments asks for a quote's terms (`get_quote`), checks its owner, then uses it exactly
once (`consume_quote`, with the payment id as `reference`, so a retry of the same payment
gets the quote back instead of `quote_already_consumed`)."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from paymesh.forex.booking import FxAccounts, ledger_transfers, markup_amount
from paymesh.forex.schemas import Conversion, Quote, Rate
from paymesh.kernel.http import ServiceClient

# How a consumed quote is booked on the ledger (forex's rules, payments' batch).
__all__ = ["ForexClient", "FxAccounts", "HttpForexClient", "ledger_transfers", "markup_amount"]


class ForexClient(Protocol):
    async def get_rate(self, base: str, quote: str, on: dt.date | None = None) -> Rate: ...

    async def get_quote(self, quote_id: str) -> Quote: ...

    async def convert(self, from_currency: str, to_currency: str, amount: int) -> Conversion:
        """`amount` minor units of `from_currency` at today's mid rate, rounded down."""
        ...

    async def consume_quote(self, quote_id: str, reference: str) -> Quote: ...

    async def create_quote(
        self, from_currency: str, to_currency: str, amount: int, side: str = "sell"
    ) -> Quote:
        """A quote owned by the calling service (payments asking for one itself)."""
        ...


class HttpForexClient:
    """`ForexClient` over HTTP: `HttpForexClient(runtime.client("forex"))`."""

    def __init__(self, http: ServiceClient) -> None:
        self.http = http

    async def get_rate(self, base: str, quote: str, on: dt.date | None = None) -> Rate:
        params = {"date": on.isoformat()} if on is not None else None
        response = await self.http.request("GET", f"/v1/forex/rates/{base}{quote}", params=params)
        return Rate.model_validate_json(response.content)

    async def get_quote(self, quote_id: str) -> Quote:
        response = await self.http.request("GET", f"/v1/forex/quotes/{quote_id}")
        return Quote.model_validate_json(response.content)

    async def convert(self, from_currency: str, to_currency: str, amount: int) -> Conversion:
        body = {"from": from_currency, "to": to_currency, "amount": amount}
        response = await self.http.request("POST", "/v1/forex/convert", json=body)
        return Conversion.model_validate_json(response.content)

    async def consume_quote(self, quote_id: str, reference: str) -> Quote:
        response = await self.http.request(
            "POST",
            f"/v1/forex/quotes/{quote_id}/consume",
            json={"reference": reference},
            # Safe to retry: a replay returns the first answer.
            idempotency_key=f"consume:{quote_id}:{reference}",
        )
        return Quote.model_validate_json(response.content)

    async def create_quote(
        self, from_currency: str, to_currency: str, amount: int, side: str = "sell"
    ) -> Quote:
        body = {"from": from_currency, "to": to_currency, "amount": amount, "side": side}
        response = await self.http.request("POST", "/v1/forex/quotes", json=body)
        return Quote.model_validate_json(response.content)
