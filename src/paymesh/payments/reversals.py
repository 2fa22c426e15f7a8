"""Reversals: an operator gives back all or part of a succeeded payment with a compensating
ledger batch (payee → payer, and the fee refunded pro rata from the fees account when the
pricing rule says so). Never more than what is left; refused when the payee's wallet
lacks the funds.

The reversal is recorded first, `pending`, in the same transaction that claims its amount
(`reversed_amount` updated only from the value read: two operators cannot both give back
the same money); its id names the ledger transfers, so posting again finds them `exists`.
The batch then moves the money and the reversal completes — or, refused, gives its claim
back. A process killed in between leaves a `pending` reversal that the recovery job posts
again and completes (or releases)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

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


def reversal_out(row: Reversal) -> ReversalOut:
    return ReversalOut(
        id=row.id,
        payment_id=row.payment_id,
        amount=row.amount,
        fee_refund=row.fee_refund,
        reason=row.reason,
        requested_by=row.requested_by,
        created_at=row.created_at,
    )


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
        if left <= 0 or amount > left:  # nothing left, or pending reversals hold the rest
            raise errors.ReversalTooLarge(left=left)
        fee_back = refund_fee(
            FeeRule.model_validate(payment.fee_rule),
            fee=payment.fee,
            amount=payment.amount,
            reversed_amount=amount,
            already_reversed=payment.reversed_amount,
            already_refunded=payment.fee_refunded,
        )
        row = Reversal(
            id=new_id("rev"),
            payment_id=payment.id,
            amount=amount,
            fee_refund=fee_back,
            reason=body.reason,
            requested_by=caller.subject,
            status="pending",
            created_at=utcnow(),
        )
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
            session.add(row)
        outcome = await self._post(payment, row)
        if outcome == "refused_funds":
            raise errors.PayeeLacksFunds()
        if outcome != "completed":
            raise errors.DependencyUnavailable(
                detail=f"ledger: {outcome}; the reversal stays pending and is retried",
                reversal_id=row.id,
            )
        return reversal_out(row)

    async def _post(self, payment: Payment, row: Reversal) -> str:
        """Post the reversal's batch and record the outcome: `completed`, `refused_funds`,
        `refused:<code>` (claim given back), or `unavailable:...` (still pending)."""
        batch = await self.booking.reversal_batch(payment, row.id, row.amount, row.fee_refund)
        try:
            result = await self.payments.remote.ledger.create_batch(batch)
        except RemoteServiceError as error:
            return f"unavailable: {error.detail}"
        code = failure_code(result.results)
        if code is None:
            await self._complete(payment.id, row, [transfer.id for transfer in batch.transfers])
            return "completed"
        await self._release(payment.id, row, code)
        return "refused_funds" if code == "exceeds_credits" else f"refused:{code}"

    async def _complete(self, payment_id: str, row: Reversal, transfer_ids: list[str]) -> None:
        async with self.database.transaction() as session:
            done = await session.execute(
                update(Reversal)
                .where(Reversal.id == row.id, Reversal.status == "pending")
                .values(status="completed")
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                return  # completed by another process
            payment = await session.get(Payment, payment_id, with_for_update=True)
            assert payment is not None
            target = (
                "reversed" if payment.reversed_amount >= payment.amount else "partially_reversed"
            )
            states.check(payment.status, target)
            payment.status = target
            payment.updated_at = utcnow()
            await self.payments.record_step(
                session,
                payment_id,
                "reversal",
                target,
                row.requested_by,
                {
                    "reversal_id": row.id,
                    "amount": row.amount,
                    "fee_refund": row.fee_refund,
                    "transfer_ids": transfer_ids,
                },
            )
            await session.flush()
            await self.payments.record_event(session, payment, "reversed")

    async def _release(self, payment_id: str, row: Reversal, code: str) -> None:
        async with self.database.transaction() as session:
            done = await session.execute(
                update(Reversal)
                .where(Reversal.id == row.id, Reversal.status == "pending")
                .values(status="refused")
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                return
            await session.execute(
                update(Payment)
                .where(Payment.id == payment_id)
                .values(
                    reversed_amount=Payment.reversed_amount - row.amount,
                    fee_refunded=Payment.fee_refunded - row.fee_refund,
                    updated_at=utcnow(),
                )
            )
            await self.payments.record_step(
                session,
                payment_id,
                "reversal",
                "refused",
                row.requested_by,
                {"reversal_id": row.id, "code": code},
            )

    async def resume_pending(self, older_than_seconds: float) -> int:
        """Reversals a crash (or the ledger being down) left `pending`: post again."""
        cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
        async with self.database.transaction() as session:
            rows = list(
                (
                    await session.execute(
                        select(Reversal)
                        .where(Reversal.status == "pending", Reversal.created_at < cutoff)
                        .order_by(Reversal.created_at)
                        .limit(50)
                    )
                ).scalars()
            )
        for row in rows:
            payment = await self.payments.get(row.payment_id)
            await self._post(payment, row)
        return len(rows)
