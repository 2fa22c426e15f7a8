"""The wallets service's tables: wallets, holds, and the operations that move money.

Balances are not kept here: the ledger account behind each wallet is the one source of
truth for money. An operation row is the wallet's record of one ledger change it asked for
(its id is the ledger transfer's id), written and committed before the ledger is called so
that a crash in between leaves something to resume (see `service/operations.py`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.kernel.db import UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Wallet(Base):
    __tablename__ = "wallets_wallet"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(255))  # identity user id (token sub)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # opening|active|frozen|closed
    ledger_account_id: Mapped[str] = mapped_column(String(128))
    request_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        # One open (or opening, or frozen) wallet per customer and currency.
        Index(
            "uq_wallets_wallet_owner_currency",
            "owner_id",
            "currency",
            unique=True,
            postgresql_where=text("status <> 'closed'"),
            sqlite_where=text("status <> 'closed'"),
        ),
        Index("ix_wallets_wallet_owner_created", "owner_id", "created_at", "id"),
        Index("ix_wallets_wallet_status_updated", "status", "updated_at"),
    )


class Hold(Base):
    __tablename__ = "wallets_hold"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wallet_id: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units reserved
    captured_amount: Mapped[int] = mapped_column(BigInteger)  # minor units captured
    # placing | active | captured | released | expired | failed
    status: Mapped[str] = mapped_column(String(16))
    transfer_id: Mapped[str] = mapped_column(String(128))  # the ledger pending transfer
    expires_in_seconds: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_wallets_hold_status_expires_at", "status", "expires_at"),)


class Operation(Base):
    """One money movement the wallet asked the ledger for; its id is the transfer id."""

    __tablename__ = "wallets_operation"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wallet_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # deposit|withdrawal|hold|capture|release
    amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(255), nullable=True)
    hold_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # pending|completed|failed
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_key: Mapped[str] = mapped_column(String(64), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_wallets_operation_status_created_at", "status", "created_at"),
        Index("ix_wallets_operation_wallet_id_created_at", "wallet_id", "created_at"),
    )
