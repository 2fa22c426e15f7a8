"""The providers service's tables: KYC checks sent to the vendor, the vendor callbacks
already accepted (so a replayed callback is refused), and payout instructions sent to a
partner bank with every status the bank gave them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint
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


class PayoutInstruction(Base):
    """One payout sent (or being sent) to a partner bank for a payment. `message` is the
    pacs.008 exactly as first built, so a resubmission sends the same bytes: the bank
    recognises the same `MsgId` and `EndToEndId` and makes no second transfer."""

    __tablename__ = "providers_payout_instruction"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(128), unique=True)
    requested_by: Mapped[str] = mapped_column(String(128), comment="the calling client")
    request_sha256: Mapped[str] = mapped_column(String(64), comment="digest of the request")
    bank: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(35), comment="pacs.008 MsgId")
    end_to_end_id: Mapped[str] = mapped_column(String(35), comment="pacs.008 EndToEndId")
    amount: Mapped[int] = mapped_column(BigInteger, comment="minor units the beneficiary gets")
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(
        String(16), comment="submitting | submitted | settled | rejected | timed_out"
    )
    bank_status: Mapped[str | None] = mapped_column(
        String(8), nullable=True, comment="the last ISO status the bank gave"
    )
    reason_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    reason_text: Mapped[str | None] = mapped_column(String(256), nullable=True)
    message: Mapped[str] = mapped_column(Text, comment="the pacs.008 sent (UTF-8 XML)")
    poll_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_poll_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="when the job next asks the bank (or resends)"
    )
    deadline_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), comment="unanswered by then: timed_out"
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("bank", "end_to_end_id"),
        Index("ix_providers_payout_instruction_due", "status", "next_poll_at"),
    )


class PayoutStatusRecord(Base):
    """A bank status applied to an instruction (or received after it timed out: `late`).
    Duplicates and statuses that would move an instruction backwards are not recorded."""

    __tablename__ = "providers_payout_status"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instruction_id: Mapped[str] = mapped_column(String(64))
    bank_status: Mapped[str] = mapped_column(String(8), comment="ISO 20022 status code")
    reason_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    reason_text: Mapped[str | None] = mapped_column(String(256), nullable=True)
    source: Mapped[str] = mapped_column(String(16), comment="answer | callback | poll")
    bank_message_id: Mapped[str] = mapped_column(String(35), comment="the pacs.002 MsgId")
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_providers_payout_status_instruction", "instruction_id", "recorded_at"),
    )
