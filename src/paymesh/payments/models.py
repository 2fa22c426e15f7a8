"""The payments service's tables: payments (with their state), the timeline of every step,
and reversals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Table, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.kernel.db import UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Payment(Base):
    __tablename__ = "payment"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    request_key: Mapped[str] = mapped_column(String(400))  # caller scope | Idempotency-Key
    request_hash: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))  # p2p | cross_currency | payout
    status: Mapped[str] = mapped_column(String(20))
    payer_id: Mapped[str] = mapped_column(String(40))
    source_wallet_id: Mapped[str] = mapped_column(String(64))
    source_account_id: Mapped[str] = mapped_column(String(128))
    payee_id: Mapped[str] = mapped_column(String(40))
    destination_wallet_id: Mapped[str] = mapped_column(String(64))
    destination_account_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(BigInteger)  # what the payer sends, source currency
    currency: Mapped[str] = mapped_column(String(3))
    destination_amount: Mapped[int] = mapped_column(BigInteger)
    destination_currency: Mapped[str] = mapped_column(String(3))
    fee: Mapped[int] = mapped_column(BigInteger)
    fee_rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    quote: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    risk: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    otp_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    otp_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    reversed_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    fee_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    # cross_currency: what the reversals (pending ones included) took back from the payee,
    # destination currency, and gave back of the FX markup, source currency
    reversed_destination_amount: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0"
    )
    markup_refunded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # payout: the beneficiary as validated, the bank, purpose, remittance information, the
    # instruction once sent and the bank's outcome (payee and destination wallet are "",
    # the destination account the payout clearing account)
    payout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    bank_outcome: Mapped[str | None] = mapped_column(String(12), nullable=True)
    """payout: settled | rejected | timed_out, recorded when the bank's answer arrives and
    acted on (post or void) by `advance`; `unbooked` when the bank settled after the
    reservation had ended (an operator's case)."""
    bank_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("request_key"),
        Index("ix_payment_status_updated_at", "status", "updated_at"),
        Index("ix_payment_payer_id_created_at", "payer_id", "created_at"),
        Index("ix_payment_created_at", "created_at", "id"),
        Index("ix_payment_bank_outcome_status", "bank_outcome", "status"),
    )


class PaymentStep(Base):
    """One line of a payment's timeline: what was done, by whom, with what outcome."""

    __tablename__ = "payment_step"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(String(40))
    step: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str | None] = mapped_column(String(255), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_payment_step_payment_id", "payment_id", "id"),)


class Reversal(Base):
    __tablename__ = "payment_reversal"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int] = mapped_column(BigInteger)
    fee_refund: Mapped[int] = mapped_column(BigInteger)
    # cross_currency only (None for p2p): taken back from the payee, destination currency;
    # the FX markup given back from FX revenue, source currency
    destination_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    markup_refund: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(12))  # pending | completed | refused
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_payment_reversal_payment_id", "payment_id"),
        Index("ix_payment_reversal_status_created_at", "status", "created_at"),
    )


payment_table: Table = Payment.__table__  # type: ignore[assignment]
step_table: Table = PaymentStep.__table__  # type: ignore[assignment]
