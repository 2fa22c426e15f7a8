"""Payments HTTP API under /v1/payments: create (Idempotency-Key required), read, list,
timeline, the step-up code, and reversals by operators."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Response
from sqlalchemy import select, tuple_

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.errors import problem_responses
from paymesh.kernel.ids import ID_PATTERN
from paymesh.kernel.pagination import decode_cursor, encode_cursor
from paymesh.kernel.routing import SessionDep, own_idempotency, state_dependency
from paymesh.payments import errors
from paymesh.payments.models import Payment, PaymentStep
from paymesh.payments.reversals import Reversals
from paymesh.payments.schemas import (
    ConfirmRequest,
    ConfirmResponse,
    OtpSubmit,
    PaymentCreate,
    PaymentOut,
    PaymentPage,
    PayoutDetails,
    ReversalCreate,
    ReversalOut,
    RiskSummary,
    Step,
    Timeline,
)
from paymesh.payments.service import Payments

router = service_router(prefix="/v1/payments", tags=["payments"])

Payer = Annotated[Caller, Depends(require(roles={"customer", "service"}))]
Reader = Annotated[
    Caller, Depends(require(roles={"customer", "service", "ops", "finance", "admin"}))
]
Operator = Annotated[Caller, Depends(require(roles={"ops", "finance"}))]
PaymentId = Annotated[str, Path(pattern=ID_PATTERN)]
PaymentsDep = Annotated[Payments, Depends(state_dependency("payments", Payments))]
ReversalsDep = Annotated[Reversals, Depends(state_dependency("reversals", Reversals))]
SEES_ALL = frozenset({"ops", "finance", "admin"})
CREATE_ERRORS = problem_responses(
    errors.IdempotencyKeyRequired,
    errors.IdempotencyKeyReused,
    errors.SourceWalletNotFound,
    errors.SourceWalletInactive,
    errors.DestinationInvalid,
    errors.SelfPayment,
    errors.CurrencyMismatch,
    errors.QuoteRequired,
    errors.QuoteExpired,
    errors.QuoteUsed,
    *errors.BENEFICIARY_ERRORS.values(),
    errors.DependencyUnavailable,
)


def payout_details(payment: Payment) -> PayoutDetails | None:
    if payment.payout is None:
        return None
    outcome = (
        {"status": payment.bank_outcome, "reason": payment.bank_reason}
        if payment.bank_outcome
        else None
    )
    return PayoutDetails.model_validate(payment.payout | {"outcome": outcome})


def payment_out(payment: Payment) -> PaymentOut:
    otp: dict[str, Any] | None = None
    if payment.status == "requires_otp":
        otp = {"expires_at": payment.otp_expires_at, "channel_hint": "sms or email"}
    failure = (
        {"code": payment.failure_code, "reason": payment.failure_reason or ""}
        if payment.failure_code
        else None
    )
    return PaymentOut(
        id=payment.id,
        type=payment.type,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        fee=payment.fee,
        total=payment.amount + payment.fee,
        destination_amount=payment.destination_amount,
        destination_currency=payment.destination_currency,
        source_wallet_id=payment.source_wallet_id,
        destination=(
            {}
            if payment.type == "payout"
            else {"wallet_id": payment.destination_wallet_id, "user_id": payment.payee_id}
        ),
        payout=payout_details(payment),
        quote=payment.quote,
        risk=RiskSummary.model_validate(payment.risk) if payment.risk else None,
        otp=otp,
        failure=failure,
        reversed_amount=payment.reversed_amount,
        description=payment.description,
        metadata=payment.metadata_,
        created_at=payment.created_at,
        updated_at=payment.updated_at,
    )


@router.post("", status_code=201, response_model=PaymentOut, responses=CREATE_ERRORS)
@own_idempotency  # the key is the payment's request key (payments/service.py)
async def create_payment(
    body: PaymentCreate,
    response: Response,
    payments: PaymentsDep,
    caller: Payer,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> PaymentOut:
    """Pay from one of your wallets: `p2p` into a wallet in the same currency, or
    `cross_currency` at a forex quote's locked rate (`quote_id`, selling exactly `amount`),
    or `payout` to an account at another bank (`beneficiary`: validated first — IBAN
    checksum, BIC, a partner bank for the currency and country, the bank's account lookup;
    the money is reserved, sent as an ISO 20022 pacs.008 and the payment waits
    `in_transit` until the bank settles (`succeeded`) or rejects (`failed`, reservation
    voided)).
    Risk decides first: `allow` books it at once (`succeeded`), `step_up` sends you a
    one-time code (`requires_otp`: confirm at `/otp`), `review` holds it for compliance
    (`under_review`), `block` fails it with the reasons. The fee is on top (`total`).
    `Idempotency-Key` is required: the same key answers the same payment."""
    if not idempotency_key:
        raise errors.IdempotencyKeyRequired()
    payment = await payments.create(caller, idempotency_key, body)
    if payment.status in ("created", "requires_otp", "under_review", "processing", "in_transit"):
        response.status_code = 202  # accepted, not finished: see `status`
    return payment_out(payment)


@router.post(
    "/confirm",
    response_model=ConfirmResponse,
    responses=CREATE_ERRORS | problem_responses(errors.InvalidCode, errors.IllegalTransition),
)
@own_idempotency  # keyed on transaction_id: both calls may carry the same Idempotency-Key
async def confirm(
    body: ConfirmRequest, response: Response, payments: PaymentsDep, caller: Payer
) -> ConfirmResponse:
    """The source design's (seed 3) confirm call, as a thin adapter over `POST
    /v1/payments`: a P2P payment from `from_account` to `to_account` of `amount` (major
    units, decimal). High risk: 202 with `requires_otp: true` and the code sent; call again
    with the same `transaction_id` and `otp` to confirm. The payment is keyed on
    `transaction_id` (not on the Idempotency-Key header, which that design reuses across
    both calls with different bodies — elsewhere in Paymesh a 422)."""
    payment = await payments.confirm(caller, body)
    waiting = payment.status == "requires_otp"
    if payment.status in ("created", "requires_otp", "under_review", "processing", "in_transit"):
        response.status_code = 202
    return ConfirmResponse(
        transaction_id=body.transaction_id,
        payment_id=payment.id,
        status=payment.status,
        requires_otp=waiting,
        payment=payment_out(payment),
    )


@router.get("", response_model=PaymentPage)
async def list_payments(
    session: SessionDep,
    caller: Reader,
    status: Annotated[str | None, Query(pattern=r"^[a-z_]{1,20}$")] = None,
    from_: Annotated[dt.datetime | None, Query(alias="from")] = None,
    to: Annotated[dt.datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> PaymentPage:
    """Payments, newest first; a customer sees those they paid, `ops`/`finance` all."""
    query = select(Payment)
    if not caller.roles & SEES_ALL:
        query = query.where(Payment.payer_id == caller.subject)
    if status is not None:
        query = query.where(Payment.status == status)
    if from_ is not None:
        query = query.where(Payment.created_at >= from_)
    if to is not None:
        query = query.where(Payment.created_at < to)
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        query = query.where(tuple_(Payment.created_at, Payment.id) < tuple_(created, last_id))
    rows = list(
        (
            await session.execute(
                query.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit + 1)
            )
        ).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    return PaymentPage(items=[payment_out(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{payment_id}", response_model=PaymentOut, responses=problem_responses(errors.PaymentNotFound)
)
async def get_payment(payment_id: PaymentId, payments: PaymentsDep, caller: Reader) -> PaymentOut:
    """One payment (yours, or any for ops, finance and services)."""
    return payment_out(await payments.visible(caller, payment_id))


@router.get(
    "/{payment_id}/timeline",
    response_model=Timeline,
    responses=problem_responses(errors.PaymentNotFound),
)
async def timeline(
    payment_id: PaymentId, session: SessionDep, payments: PaymentsDep, caller: Reader
) -> Timeline:
    """Every step with its time, actor and outcome: the risk decision and its reasons, the
    code sent and checked, the ledger transfers, reversals."""
    await payments.visible(caller, payment_id)
    rows = await session.execute(
        select(PaymentStep).where(PaymentStep.payment_id == payment_id).order_by(PaymentStep.id)
    )
    return Timeline(
        payment_id=payment_id,
        steps=[
            Step(step=row.step, outcome=row.outcome, actor=row.actor, detail=row.detail, at=row.at)
            for row in rows.scalars()
        ],
    )


@router.post(
    "/{payment_id}/otp",
    response_model=PaymentOut,
    responses=problem_responses(
        errors.PaymentNotFound, errors.IllegalTransition, errors.InvalidCode
    ),
)
async def confirm_otp(
    payment_id: PaymentId, body: OtpSubmit, payments: PaymentsDep, caller: Payer
) -> PaymentOut:
    """Confirm a payment that `requires_otp` with the code sent to you. A wrong code is
    422 with `attempts_left`; too many wrong codes fail the payment; an expired code
    cancels it (nothing moved)."""
    return payment_out(await payments.confirm_code(caller, payment_id, body.code))


@router.post(
    "/{payment_id}/otp/resend",
    response_model=PaymentOut,
    responses=problem_responses(errors.PaymentNotFound, errors.IllegalTransition),
)
async def resend_otp(payment_id: PaymentId, payments: PaymentsDep, caller: Payer) -> PaymentOut:
    """A new code (the previous one stops working); identity limits how often."""
    return payment_out(await payments.resend_code(caller, payment_id))


@router.post(
    "/{payment_id}/reversals",
    status_code=201,
    response_model=ReversalOut,
    responses=problem_responses(
        errors.PaymentNotFound,
        errors.IllegalTransition,
        errors.ReversalTooLarge,
        errors.PayeeLacksFunds,
        errors.LiquidityLacksFunds,
        errors.PayoutNotReversible,
    ),
)
async def reverse(
    payment_id: PaymentId, body: ReversalCreate, reversals: ReversalsDep, caller: Operator
) -> ReversalOut:
    """Give back all or part of a succeeded payment (ops, finance): the payee's wallet
    pays it back, and the fee is refunded pro rata where the pricing rule says so. A
    cross-currency payment is given back at its own quote rate, pro rata (the payee returns
    that share of what it received, the markup is refunded in proportion). Never more than
    what is left; refused (409) when the payee's wallet, or the FX liquidity account,
    lacks the funds."""
    return await reversals.reverse(caller, payment_id, body)
