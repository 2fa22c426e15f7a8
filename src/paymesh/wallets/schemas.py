"""Wallets API schemas. Amounts are integers in the currency's minor unit, seen from the
wallet holder's side (a deposit adds to the balance, a withdrawal or a hold takes from it).

Input that moves money is strict: `"amount": 10.0`, `"amount": "10"` or a negative amount
are refused (422), never reinterpreted.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from paymesh.kernel.money import AmountMinor, CurrencyCode

STRICT_INPUT = ConfigDict(extra="forbid", strict=True)

WalletStatus = Literal["opening", "active", "frozen", "closed"]
HoldStatus = Literal["placing", "active", "captured", "released", "expired", "failed"]
OperationKind = Literal["deposit", "withdrawal", "hold", "capture", "release"]
OperationStatus = Literal["pending", "completed", "failed"]

Reference = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(description="Your reference for this movement (a bank statement line, a ticket)."),
]


class WalletCreate(BaseModel):
    model_config = STRICT_INPUT

    currency: CurrencyCode


class Balances(BaseModel):
    available: int = Field(
        description="Minor units the holder can spend now: posted credits - posted debits "
        "- pending debits (holds)."
    )
    pending: int = Field(description="Minor units reserved by open holds.")
    posted: int = Field(description="Posted credits - posted debits, in minor units.")


class Wallet(BaseModel):
    id: str
    owner_id: str = Field(description="The identity user who holds the wallet.")
    currency: str
    status: WalletStatus
    balance: Balances
    created_at: dt.datetime
    updated_at: dt.datetime


class MovementCreate(BaseModel):
    """A deposit into, or a withdrawal from, the wallet against the platform's clearing
    account in the wallet's currency."""

    model_config = STRICT_INPUT

    amount: AmountMinor
    reference: Reference


class Operation(BaseModel):
    id: str = Field(
        description="Also the id of the ledger transfer it made (deposits, withdrawals, holds)."
    )
    wallet_id: str
    kind: OperationKind
    amount: int | None = Field(description="Minor units; null for a full capture or a release.")
    currency: str
    reference: str | None
    hold_id: str | None
    status: OperationStatus
    created_at: dt.datetime
    completed_at: dt.datetime | None


class HoldCreate(BaseModel):
    model_config = STRICT_INPUT

    amount: AmountMinor
    expires_in_seconds: int = Field(
        ge=1, le=31_536_000, description="The hold releases itself after this many seconds."
    )


class HoldCapture(BaseModel):
    model_config = STRICT_INPUT

    amount: AmountMinor | None = Field(
        default=None, description="Minor units to capture; default all. The rest is released."
    )


class Hold(BaseModel):
    id: str
    wallet_id: str
    currency: str
    amount: int = Field(description="Minor units reserved.")
    captured_amount: int = Field(description="Minor units captured (taken from the wallet).")
    status: HoldStatus
    expires_at: dt.datetime | None
    created_at: dt.datetime
    resolved_at: dt.datetime | None


class StatementLine(BaseModel):
    """One change to the wallet's balances, from the ledger's entries, oldest first."""

    entry_id: int
    transfer_id: str = Field(description="The ledger transfer; for wallet operations, its id.")
    kind: Literal["posted", "pending", "post", "void", "expire"]
    direction: Literal["credit", "debit"] = Field(
        description="credit: money in (for the holder); debit: money out or reserved."
    )
    amount: int = Field(description="Minor units this line moved.")
    balance: int = Field(description="Running posted balance after the line, minor units.")
    available: int = Field(description="Available balance after the line, minor units.")
    created_at: dt.datetime


class WalletAccount(BaseModel):
    """A wallet as a service moving money sees it: whose it is, its state and the ledger
    account behind it. For services only (payments)."""

    wallet_id: str
    owner_id: str
    currency: str
    status: WalletStatus
    ledger_account_id: str


class Validation(BaseModel):
    """Whether a wallet can receive money: never its balance."""

    wallet_id: str
    exists: bool
    active: bool = Field(description="Open and able to receive credits (frozen ones can).")
    currency: str | None = Field(description="The wallet's currency, when it exists.")
    can_receive: bool = Field(description="Active and in the currency asked about.")
    holder_name: str | None = Field(
        description="The holder's name, masked (`J*** D***`), when known.", examples=["J*** D***"]
    )


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None
