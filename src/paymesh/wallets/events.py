"""The events the wallets service writes, with the model of each one's `data`.

* A wallet's life (`wallets.wallet.*`): who holds it and the ledger account behind it; an
  operator's action also names who acted.
* A completed deposit or withdrawal: the operation as the API returns it, plus the holder.
* A hold's life (`wallets.hold.*`): the hold as the API returns it, plus the holder.

`owner_id` is there so consumers (notifications) know whom to tell without calling back.
Amounts are integers in the currency's minor unit; balances are never part of an event.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from paymesh.kernel.event_catalog import EventData, EventType

Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, examples=["2025-01-31T12:00:00Z"])
]
"""An instant as the JSON form writes it: ISO 8601, UTC."""


class _WalletsEventData(EventData):
    # Written data is exactly these types: no coercion ("7" is not an int here).
    model_config = ConfigDict(strict=True)


class WalletData(_WalletsEventData):
    """A wallet, without its balance."""

    wallet_id: str
    owner_id: str = Field(description="The identity user who holds the wallet.")
    currency: str = Field(description="ISO 4217 code.")
    ledger_account_id: str = Field(description="The ledger account that holds its money.")


class WalletActionData(WalletData):
    """A wallet an operator (or its holder, for closing) acted on."""

    by: str = Field(description="Subject of the caller who acted.")


class WalletMovementData(_WalletsEventData):
    """A completed deposit or withdrawal."""

    id: str = Field(description="The operation id, also the id of the ledger transfer.")
    wallet_id: str
    kind: Literal["deposit", "withdrawal"]
    amount: int = Field(description="Minor units moved into (deposit) or out of the wallet.")
    currency: str = Field(description="ISO 4217 code.")
    reference: str = Field(description="The caller's reference for the movement.")
    hold_id: None = Field(description="Always null: deposits and withdrawals have no hold.")
    status: Literal["completed"]
    created_at: Timestamp
    completed_at: Timestamp
    owner_id: str = Field(description="The identity user who holds the wallet.")


class WalletHoldData(_WalletsEventData):
    """A hold on a wallet's money."""

    id: str
    wallet_id: str
    currency: str = Field(description="ISO 4217 code.")
    amount: int = Field(description="Minor units reserved.")
    captured_amount: int = Field(description="Minor units captured (taken from the wallet).")
    status: Literal["active", "captured", "released", "expired"] = Field(
        description="Where the hold is now: `active` once placed (or already resolved, when "
        "the ledger resolved the reservation before the hold was recorded as placed)."
    )
    expires_at: Timestamp | None = Field(
        description="When the ledger releases the reservation by itself."
    )
    created_at: Timestamp
    resolved_at: Timestamp | None = Field(
        description="When it was captured, released or expired; null while active."
    )
    owner_id: str = Field(description="The identity user who holds the wallet.")


EVENTS: tuple[EventType, ...] = (
    EventType(
        name="wallets.wallet.opened",
        summary="A wallet became active once its ledger account existed.",
        data=WalletData,
    ),
    EventType(
        name="wallets.wallet.frozen",
        summary="An operator froze an active wallet: it can receive money but not spend it.",
        data=WalletActionData,
    ),
    EventType(
        name="wallets.wallet.unfrozen",
        summary="An operator made a frozen wallet active again.",
        data=WalletActionData,
    ),
    EventType(
        name="wallets.wallet.closed",
        summary="A wallet at zero, with no open hold or movement in progress, was closed.",
        data=WalletActionData,
    ),
    EventType(
        name="wallets.deposit.completed",
        summary="A deposit into a wallet was posted in the ledger.",
        data=WalletMovementData,
    ),
    EventType(
        name="wallets.withdrawal.completed",
        summary="A withdrawal from a wallet was posted in the ledger.",
        data=WalletMovementData,
    ),
    EventType(
        name="wallets.hold.created",
        summary="A hold reserved money on a wallet (a pending transfer in the ledger).",
        data=WalletHoldData,
    ),
    EventType(
        name="wallets.hold.captured",
        summary="A hold was captured (whole or in part): the money left the wallet and any "
        "rest was released.",
        data=WalletHoldData,
    ),
    EventType(
        name="wallets.hold.released",
        summary="A hold was released: the reserved money is available again.",
        data=WalletHoldData,
    ),
    EventType(
        name="wallets.hold.expired",
        summary="A hold passed its expiry and the ledger released the reservation.",
        data=WalletHoldData,
    ),
)
