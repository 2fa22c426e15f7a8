"""The events the forex service writes, with the model of their `data`.

Both carry the quote as the API returns it (`Quote` in JSON form, with `from` / `to` as the
currency fields' names). Amounts are integers in the currency's minor unit; rates are decimal
strings (units of `to` per unit of `from`), never floats.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from paymesh.kernel.event_catalog import EventData, EventType

Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, examples=["2025-01-31T12:00:00Z"])
]
"""An instant as the JSON form writes it: ISO 8601, UTC."""
RateText = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$", examples=["1.0842"])]


class ForexQuoteData(EventData):
    """A quote: a locked price, valid until `expires_at` and usable once."""

    # Written data is exactly these types: no coercion ("7" is not an int here).
    model_config = ConfigDict(strict=True)

    id: str
    owner: str = Field(description="Subject of the caller who asked for the quote.")
    from_currency: str = Field(alias="from", description="What the customer pays in (ISO 4217).")
    to_currency: str = Field(alias="to", description="What the customer receives (ISO 4217).")
    side: Literal["sell", "buy"] = Field(
        description="sell: the customer asked to pay `from_amount`; buy: to receive `to_amount`."
    )
    from_amount: int = Field(description="Minor units of `from` the customer pays.")
    to_amount: int = Field(description="Minor units of `to` the customer receives.")
    mid_rate: RateText = Field(description="The published mid rate, `to` per unit of `from`.")
    customer_rate: RateText = Field(description="The mid rate less `markup_bps`, cut down.")
    markup_bps: int = Field(description="The markup in basis points.")
    rate_date: str = Field(
        json_schema_extra={"format": "date"},
        description="The business day of the rates used (YYYY-MM-DD).",
    )
    source: str = Field(description="The rate provider: `ecb`, `oanda` or `static`.")
    status: Literal["open", "consumed"] = Field(
        description="open when created; consumed when used."
    )
    created_at: Timestamp
    expires_at: Timestamp
    consumed_at: Timestamp | None = Field(description="When it was used; null while open.")
    consumed_reference: str | None = Field(
        description="What used it (e.g. a payment id), when the user gave one."
    )


EVENTS: tuple[EventType, ...] = (
    EventType(
        name="forex.quote.created",
        summary="A customer asked for a quote: the price is locked until it expires.",
        data=ForexQuoteData,
    ),
    EventType(
        name="forex.quote.consumed",
        summary="A quote was used (once, before it expired; not on a retry with the same "
        "reference).",
        data=ForexQuoteData,
    ),
)
