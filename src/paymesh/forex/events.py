"""The events the forex service writes: each carries the quote as the API returns it
(`schemas.Quote` in its JSON form, with `from` / `to` as the currency fields' names)."""

from __future__ import annotations

from paymesh.forex.schemas import Quote
from paymesh.kernel.event_catalog import EventType

EVENTS: tuple[EventType, ...] = (
    EventType(
        name="forex.quote.created",
        summary="A customer asked for a quote: the price is locked until it expires.",
        data=Quote,
    ),
    EventType(
        name="forex.quote.consumed",
        summary="A quote was used (once, before it expired; not on a retry with the same "
        "reference).",
        data=Quote,
    ),
)
