"""The profiles service's tables: a profile per identity user, and their KYC submissions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Date, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.kernel.db import JSON_TYPE, UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)

KYC_STATUSES = ("none", "pending", "verified", "rejected", "needs_review")
KYC_LEVELS = ("none", "basic", "full")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Base(DeclarativeBase):
    metadata = metadata


class Profile(Base):
    __tablename__ = "profiles_profile"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    given_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    family_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    date_of_birth: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    address_line1: Mapped[str | None] = mapped_column(String(200), nullable=True)
    address_line2: Mapped[str | None] = mapped_column(String(200), nullable=True)
    city: Mapped[str | None] = mapped_column(String(100), nullable=True)
    region: Mapped[str | None] = mapped_column(String(100), nullable=True)
    postal_code: Mapped[str | None] = mapped_column(String(20), nullable=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(16), nullable=True)
    email: Mapped[str | None] = mapped_column(
        String(320), nullable=True, comment="copied from identity, which owns it"
    )
    kyc_status: Mapped[str] = mapped_column(String(16))
    kyc_level: Mapped[str] = mapped_column(String(8))
    kyc_reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON_TYPE)
    kyc_submission_id: Mapped[str | None] = mapped_column(
        String(64), nullable=True, comment="the latest submission"
    )
    identity_synced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(_one_of("kyc_status", KYC_STATUSES), name="kyc_status_known"),
        CheckConstraint(_one_of("kyc_level", KYC_LEVELS), name="kyc_level_known"),
    )


class KycSubmission(Base):
    """What the customer submitted, and what the vendor decided about it."""

    __tablename__ = "profiles_kyc_submission"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[dt.date] = mapped_column(Date)
    country: Mapped[str] = mapped_column(String(2))
    document_type: Mapped[str] = mapped_column(String(32))
    document_number: Mapped[str] = mapped_column(String(32))
    document_country: Mapped[str] = mapped_column(String(2))
    provider_check_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    level_granted: Mapped[str | None] = mapped_column(String(8), nullable=True)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON_TYPE)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        CheckConstraint(
            _one_of("status", ("pending", "verified", "rejected", "needs_review")),
            name="status_known",
        ),
        Index("ix_profiles_kyc_submission_user_id_created_at", "user_id", "created_at"),
    )
