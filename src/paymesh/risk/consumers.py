"""Events risk acts on: what became of the payments it judged, and changes to a
customer's profile (which end risk's kept copy of it, risk/profile_facts.py).

The velocity store counts a transaction once it is evaluated; a payment that failed or was
cancelled stops counting against the customer's limits, and one that succeeded without an
evaluation here (made before risk was deployed, or by another route) starts counting.

The contract payments keeps: `payments.payment.succeeded|failed|canceled` with `data`
`{payment_id, customer_id, amount, currency}` (amount in minor units of currency)."""

from __future__ import annotations

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.forex.client import ForexClient
from paymesh.kernel.db import utcnow
from paymesh.kernel.events import CloudEvent
from paymesh.kernel.runtime import ConsumerSpec, ServiceRuntime
from paymesh.risk import repository
from paymesh.risk.profile_facts import CHANGES as PROFILE_CHANGES
from paymesh.risk.profile_facts import forget as forget_profile

log = structlog.get_logger("paymesh.risk.consumers")

SUCCEEDED = ("payments.payment.succeeded",)
ENDED_WITHOUT_MONEY = ("payments.payment.failed", "payments.payment.canceled")


class PaymentOutcome(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payment_id: str = Field(pattern=r"^[A-Za-z0-9_\-:.]{1,128}$")
    customer_id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    amount: int = Field(gt=0, le=2**63 - 1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


def _outcome(event: CloudEvent) -> PaymentOutcome | None:
    try:
        return PaymentOutcome.model_validate(event.data)
    except ValidationError:
        log.warning("payment_event_unreadable", event_id=event.id, event_type=event.type)
        return None


def consumers(runtime: ServiceRuntime) -> list[ConsumerSpec]:
    async def succeeded(session: AsyncSession, event: CloudEvent) -> None:
        outcome = _outcome(event)
        if outcome is None or await repository.has_activity(session, outcome.payment_id):
            return
        amount_usd = outcome.amount
        if outcome.currency != "USD":
            # A failure raises: the kernel retries the event, then dead-letters it.
            forex: ForexClient = runtime.state["forex"]  # made at start
            amount_usd = (await forex.convert(outcome.currency, "USD", outcome.amount)).amount
        await repository.record_activity(
            session,
            {
                "customer_id": outcome.customer_id,
                "transaction_id": outcome.payment_id,
                "amount_usd": amount_usd,
                "occurred_at": utcnow(),
                "voided": False,
                "source": "event",
            },
        )

    async def ended(session: AsyncSession, event: CloudEvent) -> None:
        outcome = _outcome(event)
        if outcome is not None:
            await repository.void_activity(session, outcome.payment_id)

    async def profile_changed(_session: AsyncSession, event: CloudEvent) -> None:
        user_id = event.subject or event.data.get("user_id")
        if not isinstance(user_id, str) or not user_id:
            log.warning("profile_event_without_user", event_id=event.id, event_type=event.type)
            return
        # Not through runtime.state's CachedProfiles: that is made at start, and profiles'
        # events can arrive before (the demo seed publishes them while services start).
        await forget_profile(runtime.cache, user_id, runtime.settings.risk.profile_cache_seconds)

    return [
        ConsumerSpec("payments_succeeded", SUCCEEDED, succeeded),
        ConsumerSpec("payments_ended", ENDED_WITHOUT_MONEY, ended),
        ConsumerSpec("profile_changes", PROFILE_CHANGES, profile_changed),
    ]
