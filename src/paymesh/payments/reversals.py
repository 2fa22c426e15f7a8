"""Reversals: an operator gives back all or part of a succeeded payment with a compensating
ledger batch (payee → payer, and the fee refunded pro rata from the fees account when the
pricing rule says so). Never more than what is left; refused when the payee's wallet
lacks the funds. The reversal row is written first (its id names the transfers), so a
retried reversal finds its transfers `exists` and moves nothing twice."""

from __future__ import annotations

from sqlalchemy import update

from paymesh.kernel.auth import Caller
from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.errors import RemoteServiceError
from paymesh.kernel.ids import new_id
from paymesh.payments import errors, states
from paymesh.payments.models import Payment, Reversal
from paymesh.payments.money import Booking, failure_code
from paymesh.payments.pricing import FeeRule, refund_fee
from paymesh.payments.schemas import ReversalCreate, ReversalOut
from paymesh.payments.service import Payments


class Reversals:
    def __init__(self, database: Database, payments: Payments, booking: Booking) -> None:
        self.database = database
        self.payments = payments
        self.booking = booking

    async def reverse(self, caller: Caller, payment_id: str, body: ReversalCreate) -> ReversalOut:
        payment = await self.payments.get(payment_id)
        if payment.type != "p2p":
            raise errors.ReversalNotSupported()
        if payment.status not in ("succeeded", "partially_reversed"):
            raise errors.IllegalTransition(detail=f"a {payment.status} payment cannot be reversed")
        left = payment.amount - payment.reversed_amount
        amount = body.amount if body.amount is not None else left
        if amount > left:
            raise errors.ReversalTooLarge(left=left)
        fee_back = refund_fee(
            FeeRule.model_validate(payment.fee_rule),
            fee=payment.fee,
            amount=payment.amount,
            reversed_amount=amount,
            already_reversed=payment.reversed_amount,
            already_refunded=payment.fee_refunded,
        )
        reversal_id = new_id("rev")
        # Claim the amount first (only from the reversed total we read): two operators
        # reversing at once cannot give back more than was paid.
        async with self.database.transaction() as session:
            claimed = await session.execute(
                update(Payment)
                .where(
                    Payment.id == payment.id,
                    Payment.reversed_amount == payment.reversed_amount,
                    Payment.status == payment.status,
                )
                .values(
                    reversed_amount=Payment.reversed_amount + amount,
                    fee_refunded=Payment.fee_refunded + fee_back,
                    updated_at=utcnow(),
                )
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                raise errors.IllegalTransition(detail="another reversal is in progress; retry")
        batch = await self.booking.reversal_batch(payment, reversal_id, amount, fee_back)
        try:
            result = await self.payments.remote.ledger.create_batch(batch)
            code = failure_code(result.results)
        except RemoteServiceError as error:
            code = f"unavailable: {error.detail}"
        if code is not None:
            async with self.database.transaction() as session:
                await session.execute(
                    update(Payment)
                    .where(Payment.id == payment.id)
                    .values(
                        reversed_amount=Payment.reversed_amount - amount,
                        fee_refunded=Payment.fee_refunded - fee_back,
                        updated_at=utcnow(),
                    )
                )
            if code == "exceeds_credits":
                raise errors.PayeeLacksFunds()
            raise errors.DependencyUnavailable(detail=f"ledger: {code}")
        target = "reversed" if amount == left else "partially_reversed"
        states.check(payment.status, target)
        now = utcnow()
        async with self.database.transaction() as session:
            await session.execute(
                update(Payment)
                .where(Payment.id == payment.id)
                .values(status=target, updated_at=now)
            )
            session.add(
                Reversal(
                    id=reversal_id,
                    payment_id=payment.id,
                    amount=amount,
                    fee_refund=fee_back,
                    reason=body.reason,
                    requested_by=caller.subject,
                    created_at=now,
                )
            )
            await self.payments.record_step(
                session,
                payment.id,
                "reversal",
                target,
                caller.subject,
                {
                    "reversal_id": reversal_id,
                    "amount": amount,
                    "fee_refund": fee_back,
                    "transfer_ids": [transfer.id for transfer in batch.transfers],
                },
            )
            fresh = await session.get(Payment, payment.id)
            assert fresh is not None
            await session.refresh(fresh)
            await self.payments.record_event(session, fresh, "reversed")
        return ReversalOut(
            id=reversal_id,
            payment_id=payment.id,
            amount=amount,
            fee_refund=fee_back,
            reason=body.reason,
            requested_by=caller.subject,
            created_at=now,
        )
