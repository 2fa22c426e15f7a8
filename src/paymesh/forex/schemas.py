"""Forex API schemas. Amounts are integers in the currency's minor unit; rates are decimal
strings (units of the quote currency per unit of the base), never floats.

`from` and `to` are Python keywords, so the fields are named `from_currency` /
`to_currency` and carry `from` / `to` as their JSON names.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from paymesh.kernel.ids import ID_PATTERN
from paymesh.kernel.money import AmountMinor, CurrencyCode

STRICT_INPUT = ConfigDict(extra="forbid", strict=True, populate_by_name=False)
OUTPUT = ConfigDict(populate_by_name=True)

RateText = Annotated[
    str,
    Field(
        pattern=r"^[0-9]+(\.[0-9]+)?$",
        description="Decimal rate as a string: units of the quote currency per unit of the base.",
        examples=["1.0842"],
    ),
]
Side = Literal["sell", "buy"]
QuoteStatus = Literal["open", "consumed", "expired"]
FROM = AliasChoices("from", "from_currency")
TO = AliasChoices("to", "to_currency")


class Rate(BaseModel):
    """A published rate: `rate` units of `quote` per one unit of `base`, as of `date`."""

    pair: str = Field(examples=["EURUSD"])
    base: str
    quote: str
    rate: RateText
    date: dt.date = Field(
        description="The business day the rate is of (may precede the one "
        "asked for: weekends and holidays have no rates)."
    )
    source: str = Field(description="`ecb`, `oanda` or `static`.")


class RateList(BaseModel):
    base: str
    date: dt.date
    source: str
    data: list[Rate]


class ConversionCreate(BaseModel):
    model_config = STRICT_INPUT

    from_currency: CurrencyCode = Field(alias="from")
    to_currency: CurrencyCode = Field(alias="to")
    amount: AmountMinor = Field(description="Minor units of `from` to convert.")


class Conversion(BaseModel):
    """`source_amount` of `from` converted at the mid `rate`, rounded down."""

    model_config = OUTPUT

    from_currency: str = Field(validation_alias=FROM, serialization_alias="from")
    to_currency: str = Field(validation_alias=TO, serialization_alias="to")
    source_amount: int = Field(description="Minor units of `from` converted.")
    amount: int = Field(description="Minor units of `to`, rounded down.")
    rate: RateText
    date: dt.date
    source: str


class QuoteCreate(BaseModel):
    model_config = STRICT_INPUT

    from_currency: CurrencyCode = Field(alias="from", description="What the customer pays in.")
    to_currency: CurrencyCode = Field(alias="to", description="What the customer receives.")
    amount: AmountMinor = Field(
        description="`side: sell`: minor units of `from` the customer pays; "
        "`side: buy`: minor units of `to` the customer receives."
    )
    side: Side = "sell"


class Quote(BaseModel):
    """A locked price, valid until `expires_at` and usable once."""

    model_config = OUTPUT

    id: str = Field(examples=["qte_01JD8X0Q3Z7YH5W9KX2M4N6P8R"])
    owner: str = Field(description="Subject of the caller who asked for the quote.")
    from_currency: str = Field(validation_alias=FROM, serialization_alias="from")
    to_currency: str = Field(validation_alias=TO, serialization_alias="to")
    side: Side
    from_amount: int = Field(description="Minor units of `from` the customer pays.")
    to_amount: int = Field(description="Minor units of `to` the customer receives.")
    mid_rate: RateText
    customer_rate: RateText = Field(description="The mid rate less `markup_bps`, cut down.")
    markup_bps: int
    rate_date: dt.date
    source: str
    status: QuoteStatus
    created_at: dt.datetime
    expires_at: dt.datetime
    consumed_at: dt.datetime | None = None
    consumed_reference: str | None = None


class QuoteConsume(BaseModel):
    model_config = STRICT_INPUT

    reference: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="What used the quote (e.g. a payment id). Consuming again with the same "
        "reference returns the quote; with another, 409 quote_already_consumed.",
    )
