"""The providers service's tables: KYC checks sent to the vendor, and the vendor callbacks
already accepted (so a replayed callback is refused)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.kernel.db import JSON_TYPE, UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class KycCheck(Base):
    """One identity check at the vendor. The applicant's data is not kept here: it goes to
    the vendor and stays with the service that asked (profiles)."""

    __tablename__ = "providers_kyc_check"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(128), comment="the calling client")
    reference: Mapped[str] = mapped_column(String(128), comment="the requester's own id")
    vendor: Mapped[str] = mapped_column(String(32))
    vendor_check_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    document_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(
        String(16), comment="pending | verified | rejected | needs_review"
    )
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON_TYPE)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("requested_by", "reference"),
        Index("ix_providers_kyc_check_vendor_check_id", "vendor", "vendor_check_id", unique=True),
    )


class CallbackReceipt(Base):
    """A vendor callback whose signature was valid and which was acted on: the same event
    (or the same signature) again is a replay."""

    __tablename__ = "providers_callback_receipt"

    vendor: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    signature_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_providers_callback_receipt_received_at", "received_at"),)
