"""The payments API's bodies and answers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from paymesh.kernel.ids import ID_PATTERN
from paymesh.kernel.money import CurrencyCode
from paymesh.providers.client import Beneficiary

PaymentType = Literal["p2p", "cross_currency", "payout"]
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
    destination: Destination | None = Field(
        default=None, description="p2p and cross_currency: the wallet paid."
    )
    beneficiary: Beneficiary | None = Field(
        default=None,
        description="payout: who is paid at another bank (name, `iban` or `account_number` "
        "+ `bank_code`, `bic`, `country`, `address` lines).",
    )
    purpose: str | None = Field(
        default=None, pattern=r"^[A-Z0-9]{4}$", description="payout: ISO 20022 purpose code."
    )
    remittance_info: str | None = Field(
        default=None,
        min_length=1,
        max_length=140,
        description="payout: what the beneficiary's statement shows.",
    )
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

    @model_validator(mode="after")
    def _fields_of_the_type(self) -> PaymentCreate:
        if self.type == "payout":
            if self.beneficiary is None:
                raise ValueError("a payout needs `beneficiary`")
            if self.destination is not None or self.quote_id is not None:
                raise ValueError("a payout takes `beneficiary`, not `destination` or `quote_id`")
        else:
            if self.destination is None:
                raise ValueError(f"a {self.type} payment needs `destination`")
            if (self.beneficiary, self.purpose, self.remittance_info) != (None, None, None):
                raise ValueError(
                    "`beneficiary`, `purpose` and `remittance_info` are for payouts only"
                )
        return self


class PayoutDetails(BaseModel):
    """A payout's beneficiary (as validated) and where its instruction stands."""

    beneficiary: dict[str, Any]
    bank: str = Field(description="The partner bank that carries it.")
    account_name: str | None = Field(
        default=None, description="The holder's name as the bank knows it, when it says."
    )
    purpose: str | None
    remittance_info: str | None
    instruction: dict[str, Any] | None = Field(
        default=None, description="Once sent: the pacs.008's `message_id` and `end_to_end_id`."
    )
    outcome: dict[str, Any] | None = Field(
        default=None,
        description="The bank's final answer: `status` (settled, rejected, timed_out) and "
        "the ISO reason of a rejection (`reason`, e.g. `AC01 incorrect account number`).",
    )


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
    destination: dict[str, str] = Field(description="p2p, cross_currency: the wallet paid.")
    payout: PayoutDetails | None = Field(description="payout: beneficiary and bank status.")
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
