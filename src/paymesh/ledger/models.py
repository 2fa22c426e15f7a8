"""The ledger's tables: accounts with their four balances, transfers, and entries.

Balances are kept on the account row and change only in the transaction that inserts the
entries explaining the change; each entry carries the four balances after it, so the
statement and `balance?at=` are reads, never recomputations.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.kernel.db import BIGINT, JSON_TYPE, UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Account(Base):
    __tablename__ = "ledger_account"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    code: Mapped[int] = mapped_column(Integer)
    flags: Mapped[int] = mapped_column(
        Integer, comment="bit 1: debits<=credits, bit 2: credits<=debits"
    )
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON_TYPE)
    debits_pending: Mapped[int] = mapped_column(BigInteger)
    debits_posted: Mapped[int] = mapped_column(BigInteger)
    credits_pending: Mapped[int] = mapped_column(BigInteger)
    credits_posted: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 "
            "AND credits_pending >= 0 AND credits_posted >= 0",
            name="balances_not_negative",
        ),
        Index("ix_ledger_account_created_at_id", "created_at", "id"),
    )


class Transfer(Base):
    __tablename__ = "ledger_transfer"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # No foreign keys on the hot insert path (migration 0003): the writer locks and checks
    # both accounts in the transaction that inserts the transfer.
    debit_account_id: Mapped[str] = mapped_column(String(128))
    credit_account_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(BigInteger, comment="minor units")
    posted_amount: Mapped[int] = mapped_column(BigInteger, comment="minor units posted so far")
    currency: Mapped[str] = mapped_column(String(3))
    code: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    pending: Mapped[bool] = mapped_column()
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON_TYPE)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_ledger_transfer_created_at_id", "created_at", "id"),
        Index(
            "ix_ledger_transfer_pending_expiry",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )


class Entry(Base):
    """One change to one account's balances, with the balances after it."""

    __tablename__ = "ledger_entry"

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(128))
    transfer_id: Mapped[str] = mapped_column(String(128))
    side: Mapped[str] = mapped_column(String(6), comment="debit | credit")
    kind: Mapped[str] = mapped_column(String(16), comment="posted|pending|post|void|expire")
    amount: Mapped[int] = mapped_column(BigInteger)
    debits_pending: Mapped[int] = mapped_column(BigInteger)
    debits_posted: Mapped[int] = mapped_column(BigInteger)
    credits_pending: Mapped[int] = mapped_column(BigInteger)
    credits_posted: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_ledger_entry_account_id_id", "account_id", "id"),)
