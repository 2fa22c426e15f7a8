"""The forex service's tables: quotes (a locked rate, used once)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, Date, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.kernel.db import UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)

RATE_LENGTH = 48
"""Rates are stored as decimal text: exact on both databases (SQLite's NUMERIC is a float)."""


class Base(DeclarativeBase):
    metadata = metadata


class Quote(Base):
    __tablename__ = "forex_quote"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), comment="`sub` of the caller who asked")
    client_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    from_currency: Mapped[str] = mapped_column(String(3))
    to_currency: Mapped[str] = mapped_column(String(3))
    side: Mapped[str] = mapped_column(String(4), comment="sell | buy")
    from_amount: Mapped[int] = mapped_column(BigInteger, comment="minor units the customer pays")
    to_amount: Mapped[int] = mapped_column(BigInteger, comment="minor units the customer gets")
    mid_rate: Mapped[str] = mapped_column(String(RATE_LENGTH))
    customer_rate: Mapped[str] = mapped_column(String(RATE_LENGTH))
    markup_bps: Mapped[int] = mapped_column(Integer)
    rate_date: Mapped[dt.date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    consumed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    consumed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    consumed_reference: Mapped[str | None] = mapped_column(String(128), nullable=True)

    __table_args__ = (
        CheckConstraint("from_amount > 0 AND to_amount > 0", name="amounts_positive"),
        CheckConstraint("side IN ('sell', 'buy')", name="side_known"),
        Index("ix_forex_quote_owner_created_at", "owner", "created_at"),
    )
