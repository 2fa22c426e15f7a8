"""The risk service's tables: rule set versions and their activations, decisions (never
changed once written), the velocity store, review cases, and sanctions list versions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.kernel.db import UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class RuleSet(Base):
    """One version of the rules; versions are written once and never edited."""

    __tablename__ = "risk_ruleset"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    description: Mapped[str] = mapped_column(String(500))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(255))


class RuleSetActivation(Base):
    """The activation log: the newest row names the active version (a rollback is one more
    row, so the history of what was live when is never lost)."""

    __tablename__ = "risk_ruleset_activation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[int] = mapped_column(Integer)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    activated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    activated_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(32))  # activate | rollback | initial


class Decision(Base):
    __tablename__ = "risk_decision"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units of `currency`
    currency: Mapped[str] = mapped_column(String(3))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the evaluation's input
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    screening: Mapped[list[Any]] = mapped_column(JSON)  # sanctions matches
    score: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(8))
    decision: Mapped[str] = mapped_column(String(8))
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    ruleset_version: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("decision IN ('allow', 'step_up', 'review', 'block')", name="known"),
        CheckConstraint("level IN ('low', 'medium', 'high')", name="level_known"),
        Index("ix_risk_decision_transaction_id", "transaction_id"),
        Index("ix_risk_decision_created_at", "created_at", "id"),
    )


class Activity(Base):
    """The velocity store: a customer's transactions as risk saw them (each evaluation that
    did not block) and as payments reported them (events). One row per transaction."""

    __tablename__ = "risk_activity"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    amount_usd: Mapped[int] = mapped_column(BigInteger)  # USD cents
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    voided: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16))  # evaluation | event

    __table_args__ = (
        CheckConstraint("amount_usd >= 0", name="amount_not_negative"),
        Index("ix_risk_activity_customer_occurred", "customer_id", "occurred_at"),
        # Payments' events name the transaction only (the payment id).
        Index("ix_risk_activity_transaction_id", "transaction_id"),
    )


class VelocityHour(Base):
    """The velocity store's running totals: per customer and UTC hour, the transactions
    that count (not voided) and their USD cents. Kept in the same transaction as every
    change to `risk_activity`, so an evaluation reads at most a month of hours (744 rows)
    however many transactions the customer made, instead of all of them."""

    __tablename__ = "risk_velocity_hour"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    transactions: Mapped[int] = mapped_column(Integer)
    amount_usd: Mapped[int] = mapped_column(BigInteger)  # USD cents


class Case(Base):
    """A `review` decision waiting for a compliance officer."""

    __tablename__ = "risk_case"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    decision_id: Mapped[str] = mapped_column(String(40), unique=True)
    transaction_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        CheckConstraint("status IN ('open', 'approved', 'declined')", name="status_known"),
        Index("ix_risk_case_status_created", "status", "created_at", "id"),
    )


class SanctionsListVersion(Base):
    """A loaded list file. Per list name the newest loaded version is the one screened
    against; loading writes the version and its entries in one transaction, so a reader
    sees the old list or the whole new one."""

    __tablename__ = "risk_sanctions_list"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    list_name: Mapped[str] = mapped_column(String(32))
    published: Mapped[str] = mapped_column(String(64))  # the file's own date
    source_format: Mapped[str] = mapped_column(String(16))  # un-xml | ofac-csv
    sha256: Mapped[str] = mapped_column(String(64))
    entry_count: Mapped[int] = mapped_column(Integer)
    loaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    loaded_by: Mapped[str] = mapped_column(String(255))

    __table_args__ = (Index("ix_risk_sanctions_list_name", "list_name", "id"),)


class SanctionsEntry(Base):
    __tablename__ = "risk_sanctions_entry"

    list_version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entry: Mapped[dict[str, Any]] = mapped_column(JSON)  # ListedEntry.to_json()
