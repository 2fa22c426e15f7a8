"""Money: integer minor units and ISO 4217 currencies; decimals for rates. No floats.

Exponents come from the `iso4217` package (the ISO maintenance agency's table), so JPY has
0 decimals, USD 2 and KWD 3 without anyone typing them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any

import iso4217
from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

from paymesh.kernel.errors import PaymeshError

MAX_AMOUNT_MINOR = 2**63 - 1


class UnknownCurrency(PaymeshError):
    code = "unknown_currency"
    status = 422
    title = "Not an ISO 4217 currency code"


class InvalidAmount(PaymeshError):
    code = "invalid_amount"
    status = 422
    title = "The amount is not valid for this currency"


class CurrencyMismatch(PaymeshError):
    code = "currency_mismatch"
    status = 422
    title = "The amounts are in different currencies"


class InvalidRate(PaymeshError):
    code = "invalid_rate"
    status = 422
    title = "The rate is not a positive decimal"


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int
    name: str

    @property
    def minor_units_per_major(self) -> int:
        return int(10**self.exponent)


@lru_cache(maxsize=1)
def _currency_table() -> dict[str, Currency]:
    table: dict[str, Currency] = {}
    for entry in iso4217.Currency:
        if entry.exponent is None:  # precious metals, testing codes: no minor unit
            continue
        table[entry.code] = Currency(entry.code, int(entry.exponent), entry.currency_name)
    return table


def get_currency(code: str) -> Currency:
    try:
        return _currency_table()[code]
    except KeyError:
        raise UnknownCurrency(detail=f"{code!r} is not an ISO 4217 currency code") from None


def currencies() -> list[Currency]:
    return sorted(_currency_table().values(), key=lambda currency: currency.code)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in the currency's minor unit (cents for USD, yen for JPY, fils for KWD)."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int:
            raise InvalidAmount(detail="amounts are integers in minor units")
        get_currency(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(detail=f"{self.currency} and {other.currency}")

    def to_decimal(self) -> Decimal:
        exponent = get_currency(self.currency).exponent
        return Decimal(self.amount_minor).scaleb(-exponent)

    def format(self) -> str:
        """`12.34 USD`, `1500 JPY`, `1.250 KWD`."""
        exponent = get_currency(self.currency).exponent
        return f"{self.to_decimal():.{exponent}f} {self.currency}"

    @classmethod
    def parse(cls, value: str, currency: str) -> Money:
        """Parse a major-unit decimal string exactly; `12.345 USD` is refused, not rounded."""
        exponent = get_currency(currency).exponent
        try:
            amount = Decimal(value.strip())
        except (InvalidOperation, AttributeError):
            raise InvalidAmount(detail=f"{value!r} is not a decimal number") from None
        if not amount.is_finite():
            raise InvalidAmount(detail=f"{value!r} is not a finite number")
        minor = amount.scaleb(exponent)
        if minor != minor.to_integral_value():
            raise InvalidAmount(
                detail=f"{currency} has {exponent} decimal places; {value!r} has more"
            )
        return cls(int(minor), currency)


def parse_rate(value: str | Decimal) -> Decimal:
    """A rate is a positive finite decimal, carried as a string on the wire."""
    if isinstance(value, float):
        raise InvalidRate(detail="rates are decimal strings, never floats")
    try:
        rate = Decimal(value)
    except (InvalidOperation, TypeError):
        raise InvalidRate(detail=f"{value!r} is not a decimal number") from None
    if not rate.is_finite() or rate <= 0:
        raise InvalidRate(detail=f"{value!r} is not a positive finite decimal")
    return rate


def convert(
    amount_minor: int,
    source_currency: str,
    target_currency: str,
    rate: Decimal,
    rounding: str = ROUND_HALF_EVEN,
) -> int:
    """Convert minor units at `rate` (target major units per source major unit)."""
    source = get_currency(source_currency)
    target = get_currency(target_currency)
    major = Decimal(amount_minor).scaleb(-source.exponent) * parse_rate(rate)
    return int(major.scaleb(target.exponent).quantize(Decimal(1), rounding=rounding))


def _check_currency_code(value: str) -> str:
    if value not in _currency_table():
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return value


def _check_rate(value: Decimal) -> Decimal:
    try:
        return parse_rate(value)
    except InvalidRate as error:
        raise ValueError(error.detail) from None


def _refuse_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("decimals are carried as strings, never floats")
    return value


CurrencyCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 alphabetic code", examples=["USD"]),
    AfterValidator(_check_currency_code),
]
"""An ISO 4217 code; unknown codes fail validation (422)."""

AmountMinor = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        le=MAX_AMOUNT_MINOR,
        description="Integer amount in the currency's minor unit (cents for USD).",
    ),
]
"""A positive amount in minor units; floats and strings are refused."""

RateDecimal = Annotated[
    Decimal,
    BeforeValidator(_refuse_float),
    AfterValidator(_check_rate),
    PlainSerializer(str, return_type=str),
    Field(description='Decimal rate carried as a string, e.g. "1.0842".'),
]
