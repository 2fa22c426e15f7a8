"""Forex business rules: published rates, conversions and quotes. No HTTP, no SQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.forex import pricing, repository
from paymesh.forex.errors import (
    InvalidPair,
    QuoteAlreadyConsumed,
    QuoteExpired,
    QuoteNotFound,
    SameCurrency,
)
from paymesh.forex.models import Quote as QuoteRow
from paymesh.forex.providers import RateTable
from paymesh.forex.rates import RateBook
from paymesh.forex.schemas import (
    Conversion,
    ConversionCreate,
    Quote,
    QuoteCreate,
    Rate,
    RateList,
)
from paymesh.kernel.auth import Caller
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import new_id
from paymesh.kernel.money import UnknownCurrency, get_currency

QUOTE_READERS = frozenset({"ops", "finance", "admin", "auditor", "service"})
"""Roles that may read any quote; everyone else sees only their own."""


def split_pair(pair: str) -> tuple[str, str]:
    """`EURUSD` -> (`EUR`, `USD`); 422 for anything else."""
    if len(pair) != 6 or not pair.isascii() or not pair.isalpha() or not pair.isupper():
        raise InvalidPair(detail=f"{pair!r} is not two ISO 4217 codes, e.g. EURUSD")
    base, quote = pair[:3], pair[3:]
    for code in (base, quote):
        try:
            get_currency(code)
        except UnknownCurrency:
            raise InvalidPair(detail=f"{code!r} is not an ISO 4217 currency code") from None
    return base, quote


def published(table: RateTable, base: str, quote: str) -> Rate:
    if base == quote:
        raise SameCurrency(detail=f"{base}{quote}: a currency has no rate against itself")
    rate = pricing.cross_rate(table.rate_of(base), table.rate_of(quote))
    return Rate(
        pair=base + quote,
        base=base,
        quote=quote,
        rate=pricing.rate_text(rate),
        date=table.day,
        source=table.source,
    )


class ForexService:
    def __init__(
        self, rates: RateBook, outbox: Outbox, *, markup_bps: int, quote_ttl_seconds: int
    ) -> None:
        self.rates = rates
        self.outbox = outbox
        self.markup_bps = markup_bps
        self.quote_ttl_seconds = quote_ttl_seconds

    def now(self) -> dt.datetime:
        """The current instant by the rate book's clock (one clock for ages and expiry)."""
        return dt.datetime.fromtimestamp(self.rates.clock(), dt.UTC)

    async def _table(self, on: dt.date | None) -> RateTable:
        return await (self.rates.latest() if on is None else self.rates.on(on))

    async def rate(self, pair: str, on: dt.date | None = None) -> Rate:
        base, quote = split_pair(pair)
        return published(await self._table(on), base, quote)

    async def rates_for(self, base: str, on: dt.date | None = None) -> RateList:
        table = await self._table(on)
        table.rate_of(base)
        data = [published(table, base, code) for code in table.currencies if code != base]
        return RateList(base=base, date=table.day, source=table.source, data=data)

    async def convert(self, request: ConversionCreate) -> Conversion:
        """At the mid rate, rounded down (what a customer would receive)."""
        table = await self.rates.fresh()
        source, target = request.from_currency, request.to_currency
        mid = published(table, source, target)
        amount = pricing.received(request.amount, source, target, Decimal(mid.rate))
        return Conversion(
            from_currency=source,
            to_currency=target,
            source_amount=request.amount,
            amount=amount,
            rate=mid.rate,
            date=table.day,
            source=table.source,
        )

    async def create_quote(
        self, session: AsyncSession, request: QuoteCreate, caller: Caller, now: dt.datetime
    ) -> Quote:
        table = await self.rates.fresh()
        source, target = request.from_currency, request.to_currency
        mid = Decimal(published(table, source, target).rate)
        rate = pricing.customer_rate(mid, self.markup_bps)
        if request.side == "sell":
            from_amount = request.amount
            to_amount = pricing.received(from_amount, source, target, rate)
        else:
            to_amount = request.amount
            from_amount = pricing.paid(to_amount, source, target, rate)
        row = QuoteRow(
            id=new_id("qte"),
            owner=caller.subject,
            client_id=caller.client_id,
            from_currency=source,
            to_currency=target,
            side=request.side,
            from_amount=from_amount,
            to_amount=to_amount,
            mid_rate=pricing.rate_text(mid),
            customer_rate=pricing.rate_text(rate),
            markup_bps=self.markup_bps,
            rate_date=table.day,
            source=table.source,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=self.quote_ttl_seconds),
        )
        await repository.add_quote(session, row)
        quote = to_schema(row, now)
        await self.outbox.add(
            session, "forex.quote.created", quote.model_dump(mode="json", by_alias=True), row.id
        )
        return quote

    async def get_quote(
        self, session: AsyncSession, quote_id: str, caller: Caller, now: dt.datetime
    ) -> Quote:
        row = await repository.get_quote(session, quote_id)
        # Someone else's quote is "not found", not "forbidden": ids are not confirmed.
        if row is None or not (row.owner == caller.subject or caller.roles & QUOTE_READERS):
            raise QuoteNotFound(detail=f"no quote {quote_id}")
        return to_schema(row, now)

    async def consume_quote(
        self,
        session: AsyncSession,
        quote_id: str,
        reference: str | None,
        caller: Caller,
        now: dt.datetime,
    ) -> Quote:
        won = await repository.consume_quote(
            session, quote_id, now=now, consumed_by=caller.subject, reference=reference
        )
        row = await repository.get_quote(session, quote_id)
        if row is None:
            raise QuoteNotFound(detail=f"no quote {quote_id}")
        if won:
            quote = to_schema(row, now)
            await self.outbox.add(
                session,
                "forex.quote.consumed",
                quote.model_dump(mode="json", by_alias=True),
                row.id,
            )
            return quote
        if row.consumed_at is not None:
            if reference is not None and row.consumed_reference == reference:
                return to_schema(row, now)  # the same user of the quote, retrying
            raise QuoteAlreadyConsumed(
                detail=f"quote {quote_id} was used at {row.consumed_at.isoformat()}"
            )
        raise QuoteExpired(detail=f"quote {quote_id} expired at {row.expires_at.isoformat()}")


def to_schema(row: QuoteRow, now: dt.datetime) -> Quote:
    status = "consumed" if row.consumed_at is not None else "open"
    if status == "open" and row.expires_at <= now:
        status = "expired"
    return Quote(
        id=row.id,
        owner=row.owner,
        from_currency=row.from_currency,
        to_currency=row.to_currency,
        side=row.side,
        from_amount=row.from_amount,
        to_amount=row.to_amount,
        mid_rate=row.mid_rate,
        customer_rate=row.customer_rate,
        markup_bps=row.markup_bps,
        rate_date=row.rate_date,
        source=row.source,
        status=status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        consumed_at=row.consumed_at,
        consumed_reference=row.consumed_reference,
    )
