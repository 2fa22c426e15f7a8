"""The events the ledger writes, with the model of each one's `data`.

An account's creation carries the account as the API returns it (`Account` in JSON form).
Every transfer event carries the same snapshot of the transfer (`writer.transfer_event_data`),
taken when the operation was applied: its type says what happened, `status` where it left
the transfer. Amounts are integers in the currency's minor unit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from paymesh.kernel.event_catalog import EventData, EventType

Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, examples=["2025-01-31T12:00:00Z"])
]
"""An instant as the JSON form writes it: ISO 8601, UTC."""


class _LedgerEventData(EventData):
    # Written data is exactly these types: no coercion ("7" is not an int here).
    model_config = ConfigDict(strict=True)


class LedgerAccountFlags(_LedgerEventData):
    debits_must_not_exceed_credits: bool = Field(
        description="Debits (posted + pending) may not exceed posted credits, e.g. a wallet."
    )
    credits_must_not_exceed_debits: bool = Field(
        description="Credits (posted + pending) may not exceed posted debits."
    )


class LedgerAccountData(_LedgerEventData):
    """A new account, as `GET /v1/ledger/accounts/{id}` returns it."""

    id: str
    currency: str = Field(description="ISO 4217 code.")
    code: int = Field(description="Account type, chosen by the client (0-65535).")
    flags: LedgerAccountFlags
    metadata: dict[str, Any] = Field(description="The client's metadata, as sent.")
    debits_pending: int = Field(description="Minor units reserved by pending debits (0).")
    debits_posted: int = Field(description="Minor units (0 for a new account).")
    credits_pending: int = Field(description="Minor units reserved by pending credits (0).")
    credits_posted: int = Field(description="Minor units (0 for a new account).")
    created_at: Timestamp


class LedgerTransferData(_LedgerEventData):
    """A transfer as the operation left it."""

    id: str = Field(description="The client-chosen transfer id (its idempotency key).")
    debit_account_id: str
    credit_account_id: str
    amount: int = Field(description="Minor units requested (reserved, for a pending transfer).")
    posted_amount: int = Field(
        description="Minor units posted: 0 while pending or once voided or expired; up to "
        "`amount` once a pending transfer is posted."
    )
    currency: str = Field(description="ISO 4217 code.")
    code: int = Field(description="Transfer type, chosen by the client (0-65535).")
    status: Literal["pending", "posted", "voided", "expired"]
    metadata: dict[str, Any] = Field(description="The client's metadata, as sent.")


EVENTS: tuple[EventType, ...] = (
    EventType(
        name="ledger.account.created",
        summary="An account was created (not on an idempotent repeat of the same request).",
        data=LedgerAccountData,
    ),
    EventType(
        name="ledger.transfer.pending",
        summary="A pending transfer reserved its amount on both accounts, to be posted, "
        "voided or expired later.",
        data=LedgerTransferData,
    ),
    EventType(
        name="ledger.transfer.posted",
        summary="A transfer moved money: created posted, or a pending transfer posted "
        "(whole or in part).",
        data=LedgerTransferData,
    ),
    EventType(
        name="ledger.transfer.voided",
        summary="A pending transfer was voided: its reservation was released, nothing moved.",
        data=LedgerTransferData,
    ),
    EventType(
        name="ledger.transfer.expired",
        summary="A pending transfer passed its timeout and the expiry job released its "
        "reservation.",
        data=LedgerTransferData,
    ),
)
