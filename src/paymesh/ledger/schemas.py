"""Ledger API schemas. Amounts are integers in the currency's minor unit.

Every schema a client sends that moves money or shapes an account is strict: no coercion,
so `"pending": "yes"`, `"code": "7"` or `"amount": 10.0` are refused, never reinterpreted.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from paymesh.kernel.ids import ID_PATTERN
from paymesh.kernel.money import MAX_AMOUNT_MINOR, CurrencyCode
from paymesh.kernel.schemas import (
    MAX_METADATA_KEYS,
    metadata_checker,
    metadata_description,
)

MAX_METADATA_BYTES = 4096
STRICT_INPUT = ConfigDict(extra="forbid", strict=True)

ObjectId = Annotated[str, Field(pattern=ID_PATTERN, examples=["acc_alice_usd"])]
Metadata = Annotated[
    dict[str, Any],
    metadata_checker(MAX_METADATA_BYTES),
    Field(
        description=metadata_description(MAX_METADATA_BYTES),
        json_schema_extra={"maxProperties": MAX_METADATA_KEYS},
    ),
]
SignedAmount = Annotated[
    int,
    Field(
        strict=True,
        le=MAX_AMOUNT_MINOR,
        # Zero and negatives are refused by the posting rules with their own code
        # (amount_must_be_positive); the schema announces the same bound.
        json_schema_extra={"minimum": 1},
        description="Integer amount in minor units (cents for USD); must be > 0.",
    ),
]


class AccountFlags(BaseModel):
    model_config = STRICT_INPUT

    debits_must_not_exceed_credits: bool = Field(
        default=False,
        description="Refuse transfers that would make debits (posted + pending) exceed "
        "posted credits: an asset the customer holds with us, e.g. a wallet.",
    )
    credits_must_not_exceed_debits: bool = Field(
        default=False, description="The mirror image, for accounts that must not go positive."
    )


class AccountCreate(BaseModel):
    model_config = STRICT_INPUT

    id: ObjectId | None = Field(default=None, description="Client-chosen id; generated if absent.")
    currency: CurrencyCode
    code: int = Field(default=0, ge=0, le=65535, description="Account type, chosen by you.")
    flags: AccountFlags = AccountFlags()
    metadata: Metadata = Field(default_factory=dict)


class Account(BaseModel):
    id: str
    currency: str
    code: int
    flags: AccountFlags
    metadata: dict[str, Any]
    debits_pending: int = Field(description="Minor units reserved by pending debits.")
    debits_posted: int
    credits_pending: int
    credits_posted: int
    created_at: dt.datetime


class TransferCreate(BaseModel):
    model_config = STRICT_INPUT

    id: ObjectId = Field(description="Client-chosen id; it is the idempotency key.")
    debit_account_id: ObjectId
    credit_account_id: ObjectId
    amount: SignedAmount
    currency: CurrencyCode
    code: int = Field(default=0, ge=0, le=65535)
    pending: bool = Field(default=False, description="Reserve now; post or void later.")
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=31_536_000, description="Pending only: expires after this."
    )
    metadata: Metadata = Field(default_factory=dict)


class PendingPost(BaseModel):
    model_config = STRICT_INPUT

    amount: SignedAmount | None = Field(
        default=None, description="Minor units to post; default the whole pending amount."
    )


TransferStatus = Literal["posted", "pending", "voided", "expired"]


class Transfer(BaseModel):
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int = Field(description="Minor units requested (reserved, for pending transfers).")
    posted_amount: int = Field(description="Minor units actually posted.")
    currency: str
    code: int
    status: TransferStatus
    pending: bool
    timeout_seconds: int | None
    expires_at: dt.datetime | None
    metadata: dict[str, Any]
    created_at: dt.datetime
    resolved_at: dt.datetime | None


class TransferBatch(BaseModel):
    model_config = STRICT_INPUT

    transfers: list[TransferCreate] = Field(min_length=1, max_length=8000)
    atomic: bool = Field(default=False, description="All apply or none do.")


class TransferResult(BaseModel):
    id: str
    status: Literal["created", "exists", "failed"]
    code: str | None = Field(default=None, description="Result code when status is failed.")


class TransferBatchResult(BaseModel):
    results: list[TransferResult]


class Entry(BaseModel):
    id: int
    transfer_id: str
    side: Literal["debit", "credit"]
    kind: Literal["posted", "pending", "post", "void", "expire"]
    amount: int = Field(description="Minor units this entry moved on this account.")
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    balance_posted: int = Field(description="credits_posted - debits_posted after the entry.")
    created_at: dt.datetime


class Balance(BaseModel):
    account_id: str
    at: dt.datetime
    currency: str
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


class CurrencyTotals(BaseModel):
    currency: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    balanced: bool


class TrialBalance(BaseModel):
    currencies: list[CurrencyTotals]
    balanced: bool


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None
