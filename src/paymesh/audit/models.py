"""The audit service's tables: records (append-only, hash-chained per source service) and
checkpoints (periodic seals over every chain's head, and what retention pruned)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.kernel.db import UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class AuditRecord(Base):
    """One event, masked, in its source's chain. Never updated, never deleted (except by
    retention, which a checkpoint records)."""

    __tablename__ = "audit_record"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    chain: Mapped[str] = mapped_column(String(64))  # the source service
    seq: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(128))
    resource: Mapped[str | None] = mapped_column(String(255), nullable=True)
    actor_subject: Mapped[str | None] = mapped_column(String(255), nullable=True)  # search
    actor: Mapped[dict[str, Any]] = mapped_column(JSON)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # masked
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        UniqueConstraint("event_id"),
        Index("ix_audit_record_occurred_at", "occurred_at", "id"),
        Index("ix_audit_record_type_occurred_at", "type", "occurred_at"),
        Index("ix_audit_record_actor_subject_occurred_at", "actor_subject", "occurred_at"),
    )


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    heads: Mapped[dict[str, Any]] = mapped_column(JSON)  # chain -> [seq, hash]
    pruned: Mapped[dict[str, Any]] = mapped_column(JSON)  # chain -> [seq, hash]
    sealed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
