"""Events payments acts on: a compliance officer's answer to a payment held for review
(risk's `risk.case.approved` / `risk.case.declined`, naming the payment as
`transaction_id`) — an approval moves the payment to `processing` here (in the consumer's
transaction) and the money is booked right after the commit — and notifications' outcomes
for messages about a payment, which become lines of its timeline; and providers' outcomes
of payouts (`providers.payout.settled|rejected|timed_out`), recorded on the payment here and
acted on (the reservation posted or voided) right after the commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.events import CloudEvent
from paymesh.kernel.runtime import ConsumerSpec, ServiceRuntime
from paymesh.payments.models import Payment
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
            session.info.setdefault(ADVANCE_AFTER_COMMIT, []).append((payment_id, "review"))

    async def payout_outcome(session: AsyncSession, event: CloudEvent) -> None:
        payment_id, status = event.data.get("payment_id"), event.data.get("status")
        if not isinstance(payment_id, str) or not isinstance(status, str):
            return
        reason_code, reason_text = event.data.get("reason_code"), event.data.get("reason_text")
        if await payments.record_bank_outcome(
            session,
            payment_id,
            status,
            reason_code if isinstance(reason_code, str) else None,
            reason_text if isinstance(reason_text, str) else None,
            "event",
        ):
            session.info.setdefault(ADVANCE_AFTER_COMMIT, []).append((payment_id, "bank"))

    async def notification_outcome(session: AsyncSession, event: CloudEvent) -> None:
        """A message about a payment went out (or failed): a line on its timeline."""
        about, source = event.data.get("about"), event.data.get("event_type")
        if not isinstance(about, str) or not str(source or "").startswith("payments."):
            return
        payment = await session.get(Payment, about)
        if payment is None:
            return
        detail = {
            "notification_id": event.data.get("id"),
            "channel": event.data.get("channel"),
            "to": "payee" if event.data.get("user_id") == payment.payee_id else "payer",
            "message": source,
        }
        outcome = event.type.rpartition(".")[2]
        await payments.record_step(session, about, "notification", outcome, None, detail)

    return [
        ConsumerSpec(
            "notification_outcomes",
            (
                "notifications.notification.sent",
                "notifications.notification.delivered",
                "notifications.notification.failed",
            ),
            notification_outcome,
        ),
        ConsumerSpec(
            "payout_outcomes",
            (
                "providers.payout.settled",
                "providers.payout.rejected",
                "providers.payout.timed_out",
            ),
            payout_outcome,
        ),
        ConsumerSpec(
            "review_outcomes", ("risk.case.approved", "risk.case.declined"), case_resolved
        ),
    ]
