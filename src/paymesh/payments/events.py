"""The events the payments service writes (`Payments.record_event`), with the model of their
`data` (`service.event_data`).

Every payment event carries the same data: the payment as it stands after the transition.
A payment's move to `processing` writes no event. A reversal writes
`payments.payment.reversed` whether it reverses all of the payment or part of it: `status`
says which (`reversed` or `partially_reversed`).
"""

from __future__ import annotations

from pydantic import Field

from paymesh.kernel.event_catalog import EventData, EventType
from paymesh.payments.schemas import PaymentType
from paymesh.payments.states import State


class PayoutBeneficiaryRef(EventData):
    """A payout's beneficiary as events show it: no name or address."""

    account: str = Field(description="The IBAN or account number, masked: `****` + its last 4.")
    country: str = Field(description="The beneficiary's ISO 3166 country code.")


class PaymentEventData(EventData):
    """A payment after the transition the event reports."""

    payment_id: str
    type: PaymentType
    status: State = Field(description="The payment's status once the event was written.")
    customer_id: str = Field(description="The payer (a user id).")
    payee_id: str = Field(description="The user paid; empty for a payout.")
    amount: int = Field(description="Minor units the payer sends (source currency).")
    currency: str
    fee: int = Field(description="Minor units of `currency` charged on top, to the payer.")
    destination_amount: int = Field(description="Minor units the payee receives.")
    destination_currency: str
    source_wallet_id: str
    destination_wallet_id: str = Field(description="The wallet paid; empty for a payout.")
    failure_code: str | None = Field(description="Why the payment failed or was canceled.")
    bank: str | None = Field(
        default=None, description="payout only: the partner bank that carries it."
    )
    beneficiary: PayoutBeneficiaryRef | None = Field(
        default=None, description="payout only: the beneficiary's masked account and country."
    )
    bank_reason: str | None = Field(
        default=None,
        description="payout only: the bank's reason for a rejection (e.g. `AC01 incorrect "
        "account number`), when it gave one.",
    )


EVENTS: tuple[EventType, ...] = (
    EventType(
        name="payments.payment.created",
        summary="A payment was accepted and stored, before risk or any money moved.",
        data=PaymentEventData,
    ),
    EventType(
        name="payments.payment.requires_otp",
        summary="Risk asked for a step-up: a one-time code was sent to the payer to confirm.",
        data=PaymentEventData,
    ),
    EventType(
        name="payments.payment.under_review",
        summary="Risk sent the payment to a compliance officer; it waits for their decision.",
        data=PaymentEventData,
    ),
    EventType(
        name="payments.payment.in_transit",
        summary="A payout's money was reserved and its instruction sent to the partner bank.",
        data=PaymentEventData,
    ),
    EventType(
        name="payments.payment.succeeded",
        summary="The payment was posted on the ledger (for a payout: the bank settled it).",
        data=PaymentEventData,
    ),
    EventType(
        name="payments.payment.received",
        summary="Written with `succeeded` for a p2p or cross-currency payment, for the payee.",
        data=PaymentEventData,
    ),
    EventType(
        name="payments.payment.failed",
        summary="The payment failed (refused by risk, compliance, the ledger, the bank, a "
        "locked code); nothing moved, or a payout's reservation was voided.",
        data=PaymentEventData,
    ),
    EventType(
        name="payments.payment.canceled",
        summary="The step-up code expired (or was voided) before the payer answered it; "
        "nothing moved.",
        data=PaymentEventData,
    ),
    EventType(
        name="payments.payment.reversed",
        summary="A reversal was posted: all of the payment (`status` reversed) or part of it "
        "(`status` partially_reversed).",
        data=PaymentEventData,
    ),
)
