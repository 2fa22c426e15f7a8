"""Reversals: an operator gives back all or part of a succeeded payment with a compensating
ledger batch (payee → payer, and the fee refunded pro rata from the fees account when the
pricing rule says so). A cross-currency payment is given back at its quote's rate: the
payee returns the pro rata destination amount to FX liquidity, FX liquidity and FX revenue
return the source amount to the payer (`money.Booking.reversal_batch`). Never more than
what is left; refused when the payee's wallet lacks the funds.

The reversal is recorded first, `pending`, in the same transaction that claims its amount
(`reversed_amount` updated only from the value read: two operators cannot both give back
the same money); its id names the ledger transfers, so posting again finds them `exists`.
The batch then moves the money and the reversal completes — or, refused, gives its claim
back. A process killed in between leaves a `pending` reversal that the recovery job posts
again and completes (or releases)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from paymesh.forex.client import markup_amount
from paymesh.forex.schemas import Quote
from paymesh.kernel.auth import Caller
from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.errors import RemoteServiceError
from paymesh.kernel.ids import new_id
from paymesh.payments import errors, states
from paymesh.payments.models import Payment, Reversal
from paymesh.payments.money import (
    PAYEE_LEG,
    Booking,
    cumulative_share,
    first_failure,
    pro_rata_share,
)
from paymesh.payments.pricing import FeeRule, refund_fee
from paymesh.payments.schemas import ReversalCreate, ReversalOut
from paymesh.payments.service import Payments


def reversal_out(row: Reversal) -> ReversalOut:
    return ReversalOut(
        id=row.id,
        payment_id=row.payment_id,
        amount=row.amount,
        destination_amount=row.amount if row.destination_amount is None else row.destination_amount,
        fee_refund=row.fee_refund,
        reason=row.reason,
        requested_by=row.requested_by,
        created_at=row.created_at,
    )


def fx_shares(payment: Payment, amount: int) -> tuple[int | None, int | None]:
    """What reversing `amount` of a cross-currency payment takes back from the payee
    (destination currency) and gives back of the FX markup (source currency), at the
    quote's rate; (None, None) for p2p.

    The destination amount is the pro rata share rounded down, and the rest for the
    reversal that completes the payment (decisions.md, "Reversing a cross-currency
    payment"). The markup share is cumulative, like the fee's refund: a per-reversal
    floor would leave the markup's rounding to the last reversal, which may be smaller
    than it."""
    if payment.type != "cross_currency":
        return None, None
    assert payment.quote is not None
    destination = pro_rata_share(
        payment.destination_amount,
        part=amount,
        whole=payment.amount,
        given=payment.reversed_destination_amount,
        completes=payment.reversed_amount + amount == payment.amount,
    )
    markup = cumulative_share(
        markup_amount(Quote.model_validate(payment.quote)),
        part=amount,
        whole=payment.amount,
        done=payment.reversed_amount,
        given=payment.markup_refunded,
    )
    return destination, markup


def step_detail(payment: Payment, row: Reversal) -> dict[str, Any]:
    """The timeline's record of a completed reversal: both sides' amounts."""
    detail: dict[str, Any] = {
        "reversal_id": row.id,
        "amount": row.amount,
        "currency": payment.currency,
        "fee_refund": row.fee_refund,
    }
    if row.destination_amount is not None:
        detail |= {
            "destination_amount": row.destination_amount,
            "destination_currency": payment.destination_currency,
            "markup_refund": row.markup_refund,
        }
    return detail


class Reversals:
    def __init__(self, database: Database, payments: Payments, booking: Booking) -> None:
        self.database = database
        self.payments = payments
        self.booking = booking

    async def reverse(self, caller: Caller, payment_id: str, body: ReversalCreate) -> ReversalOut:
        payment = await self.payments.get(payment_id)
        if payment.type == "payout":
            raise errors.PayoutNotReversible()
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
        destination_back, markup_back = fx_shares(payment, amount)
        row = Reversal(
            id=new_id("rev"),
            payment_id=payment.id,
            amount=amount,
            fee_refund=fee_back,
            destination_amount=destination_back,
            markup_refund=markup_back,
            reason=body.reason,
            requested_by=caller.subject,
            status="pending",
            created_at=utcnow(),
        )
        await self._claim(payment, row)
        outcome = await self._post(payment, row)
        if outcome == "refused_funds":
            raise errors.PayeeLacksFunds()
        if outcome == "refused_liquidity":
            raise errors.LiquidityLacksFunds()
        if outcome != "completed":
            raise errors.DependencyUnavailable(
                detail=f"ledger: {outcome}; the reversal stays pending and is retried",
                reversal_id=row.id,
            )
        return reversal_out(row)

    async def _claim(self, payment: Payment, row: Reversal) -> None:
        """Record the reversal `pending` and add its amounts to the payment's, only if no
        other reversal changed them since they were read (the shares were computed from
        them)."""
        async with self.database.transaction() as session:
            claimed = await session.execute(
                update(Payment)
                .where(
                    Payment.id == payment.id,
                    Payment.reversed_amount == payment.reversed_amount,
                    Payment.reversed_destination_amount == payment.reversed_destination_amount,
                    Payment.markup_refunded == payment.markup_refunded,
                    Payment.status == payment.status,
                )
                .values(
                    reversed_amount=Payment.reversed_amount + row.amount,
                    fee_refunded=Payment.fee_refunded + row.fee_refund,
                    reversed_destination_amount=Payment.reversed_destination_amount
                    + (row.destination_amount or 0),
                    markup_refunded=Payment.markup_refunded + (row.markup_refund or 0),
                    updated_at=utcnow(),
                )
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                raise errors.IllegalTransition(detail="another reversal is in progress; retry")
            session.add(row)

    async def _post(self, payment: Payment, row: Reversal) -> str:
        """Post the reversal's batch and record the outcome: `completed`, `refused_funds`
        (the payee's wallet), `refused_liquidity` (an FX liquidity account),
        `refused:<code>` (claim given back), or `unavailable:...` (still pending)."""
        batch = await self.booking.reversal_batch(
            payment,
            row.id,
            row.amount,
            row.fee_refund,
            destination_amount=row.destination_amount,
            markup_refund=row.markup_refund,
        )
        try:
            result = await self.payments.remote.ledger.create_batch(batch)
        except RemoteServiceError as error:
            return f"unavailable: {error.detail}"
        failure = first_failure(result.results)
        if failure is None:
            await self._complete(payment.id, row, [transfer.id for transfer in batch.transfers])
            return "completed"
        transfer_id, code = failure
        await self._release(payment.id, row, code)
        if code != "exceeds_credits":
            return f"refused:{code}"
        return "refused_funds" if transfer_id == f"{row.id}_{PAYEE_LEG}" else "refused_liquidity"

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
                step_detail(payment, row) | {"transfer_ids": transfer_ids},
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
                    reversed_destination_amount=Payment.reversed_destination_amount
                    - (row.destination_amount or 0),
                    markup_refunded=Payment.markup_refunded - (row.markup_refund or 0),
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
