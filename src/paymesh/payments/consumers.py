"""Events payments acts on: a compliance officer's answer to a payment held for review
(risk's `risk.case.approved` / `risk.case.declined`, naming the payment as
`transaction_id`). An approval moves the payment to `processing` here (in the consumer's
transaction) and the money is booked right after the commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.events import CloudEvent
from paymesh.kernel.runtime import ConsumerSpec, ServiceRuntime
from paymesh.payments.service import ADVANCE_AFTER_COMMIT, Payments


def consumers(runtime: ServiceRuntime) -> list[ConsumerSpec]:
    payments: Payments = runtime.state["payments"]

    async def case_resolved(session: AsyncSession, event: CloudEvent) -> None:
        payment_id = event.data.get("transaction_id")
        if not isinstance(payment_id, str) or not payment_id.startswith("pay_"):
            return
        approved = event.type == "risk.case.approved"
        actor = getattr(event, "actor", None)
        if await payments.case_resolved(session, payment_id, approved, actor):
            # Booked once this transaction commits (the recovery job would get there too).
            session.info.setdefault(ADVANCE_AFTER_COMMIT, []).append(payment_id)

    return [
        ConsumerSpec("review_outcomes", ("risk.case.approved", "risk.case.declined"), case_resolved)
    ]
