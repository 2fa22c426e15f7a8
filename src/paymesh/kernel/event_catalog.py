"""The event types each service publishes, each with the model of its `data`.

A service lists them in its spec (`ServiceSpec.events`, kept in `<service>/events.py`). The
list is the source of the AsyncAPI document (`kernel/asyncapi.py`, `/asyncapi.json`), and
it cannot drift from what the code writes: with `PAYMESH_EVENTS_CHECK_PAYLOADS` on (the
test suite turns it on), the outbox refuses an event whose type the service did not declare
or whose data its model does not accept — so every test that makes an event checks the
document. In production the check is off: it would cost a validation per event, and a
documentation gap must not fail a payment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict


class EventData(BaseModel):
    """The base of event data models: every field the event carries is declared."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class EventType:
    name: str
    """The CloudEvent `type`: `<service>.<entity>.<what happened>`, e.g.
    `payments.payment.succeeded`."""
    summary: str
    """One sentence: when the event is written."""
    data: type[BaseModel]


class UndeclaredEvent(RuntimeError):
    """An event type a service wrote without declaring it in its spec."""


class EventCatalog:
    def __init__(self, service: str, types: Sequence[EventType]) -> None:
        self.service = service
        self.by_type = {item.name: item for item in types}
        for name in self.by_type:
            if not name.startswith(f"{service}."):
                raise ValueError(f"{service} declares {name}: its events start with {service}.")

    def check(self, event_type: str, data: Any) -> None:
        """Raise when `event_type` is not declared or `data` does not fit its model."""
        declared = self.by_type.get(event_type)
        if declared is None:
            raise UndeclaredEvent(
                f"{self.service} wrote {event_type!r}, which its spec's events do not declare "
                f"({self.service}/events.py)"
            )
        declared.data.model_validate(data)
