"""The payments API's bodies and answers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from paymesh.kernel.ids import ID_PATTERN
from paymesh.kernel.money import CurrencyCode

PaymentType = Literal["p2p", "cross_currency"]
WalletRef = str
MAX_MINOR = 2**63 - 1


class Destination(BaseModel):
    """Where the money goes: a wallet, or a user's (by id or username) wallet in the
    destination currency."""

    model_config = ConfigDict(extra="forbid")

    wallet_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{1,64}$")
    user_id: str | None = Field(default=None, pattern=ID_PATTERN)
    username: str | None = Field(
        default=None, min_length=1, max_length=150, pattern=r"^[A-Za-z0-9._@+-]+$"
    )
    currency: CurrencyCode | None = Field(
        default=None, description="With `user_id`: which of their wallets (default: the payment's)."
    )

    @model_validator(mode="after")
    def _one_target(self) -> Destination:
        if sum(value is not None for value in (self.wallet_id, self.user_id, self.username)) != 1:
            raise ValueError("give exactly one of wallet_id, user_id and username")
        return self


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: PaymentType
    source_wallet_id: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    destination: Destination
    amount: int = Field(gt=0, le=MAX_MINOR, description="Minor units the payer sends.")
    currency: CurrencyCode = Field(description="The source wallet's currency.")
    quote_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="cross_currency: a forex quote selling exactly `amount` of `currency`; "
        "without one, payments asks forex for a quote.",
    )
    description: str | None = Field(default=None, max_length=500)
    metadata: dict[str, JsonValue] = Field(default_factory=dict, max_length=20)


class RiskSummary(BaseModel):
    decision: str
    level: str
    score: int
    reasons: list[dict[str, Any]]
    decision_id: str | None


class PaymentOut(BaseModel):
    id: str
    type: PaymentType
    status: str
    amount: int = Field(description="Minor units the payer sends (source currency).")
    currency: str
    fee: int = Field(description="Minor units of `currency` charged on top, to the payer.")
    total: int = Field(description="amount + fee: what leaves the source wallet.")
    destination_amount: int = Field(description="Minor units the payee receives.")
    destination_currency: str
    source_wallet_id: str
    destination: dict[str, str]
    quote: dict[str, Any] | None
    risk: RiskSummary | None
    otp: dict[str, Any] | None = Field(
        description="While `requires_otp`: where the code went and until when."
    )
    failure: dict[str, str] | None
    reversed_amount: int
    description: str | None
    metadata: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class PaymentPage(BaseModel):
    items: list[PaymentOut]
    next_cursor: str | None


class Step(BaseModel):
    step: str
    outcome: str
    actor: str | None
    detail: dict[str, Any]
    at: dt.datetime


class Timeline(BaseModel):
    payment_id: str
    steps: list[Step]


class OtpSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=8, pattern=r"^[0-9]+$")


class ReversalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int | None = Field(
        default=None, gt=0, le=MAX_MINOR, description="Minor units; default: what is left."
    )
    reason: str = Field(min_length=1, max_length=500)


class ReversalOut(BaseModel):
    id: str
    payment_id: str
    amount: int = Field(description="Minor units of the payment's currency the payer gets back.")
    destination_amount: int = Field(
        description="Minor units of the destination currency taken back from the payee: "
        "for cross_currency, at the quote's rate, pro rata (rounded down; the reversal "
        "that completes the payment takes exactly what is left); for p2p, `amount`."
    )
    fee_refund: int = Field(description="Minor units of the payment's currency refunded.")
    reason: str
    requested_by: str
    created_at: dt.datetime


class ConfirmRequest(BaseModel):
    """The source design's confirm call (seed 3): the first call pays, or answers
    `requires_otp`; the second carries the code."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$", description="The caller's id.")
    customer_id: str = Field(pattern=ID_PATTERN)
    amount: Decimal = Field(gt=0, max_digits=20, decimal_places=4, description="Major units.")
    from_account: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$", description="Payer's wallet.")
    to_account: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$", description="Payee's wallet.")
    otp: str | None = Field(default=None, min_length=6, max_length=8, pattern=r"^[0-9]+$")


class ConfirmResponse(BaseModel):
    transaction_id: str
    payment_id: str
    status: str
    requires_otp: bool
    payment: PaymentOut
