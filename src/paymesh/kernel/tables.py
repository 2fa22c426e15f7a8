"""Tables every service owns a copy of, in its own schema or file.

`KernelTables(metadata)` adds them to a service's MetaData; the service's first migration
creates them with `paymesh.kernel.migrations.create_kernel_tables()`.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, LargeBinary, MetaData, String, Table, Text, text

from paymesh.kernel.db import JSON_TYPE, UTCDateTime


def _outbox(metadata: MetaData) -> Table:
    return Table(
        "outbox_event",
        metadata,
        Column("id", String(64), primary_key=True, comment="CloudEvents id"),
        Column("type", String(200), nullable=False),
        Column("subject", String(200), nullable=True),
        Column("envelope", JSON_TYPE, nullable=False, comment="the whole CloudEvent"),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("published_at", UTCDateTime(), nullable=True),
        Column("locked_until", UTCDateTime(), nullable=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
        Index(
            "ix_outbox_event_unpublished",
            "created_at",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )


def _inbox(metadata: MetaData) -> Table:
    return Table(
        "inbox_event",
        metadata,
        Column("event_id", String(64), primary_key=True),
        Column("consumer", String(100), primary_key=True),
        Column("processed_at", UTCDateTime(), nullable=False),
    )


def _dead_letter(metadata: MetaData) -> Table:
    return Table(
        "dead_letter",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("event_id", String(64), nullable=False),
        Column("consumer", String(100), nullable=False),
        Column("event_type", String(200), nullable=False),
        Column("envelope", JSON_TYPE, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("error", Text, nullable=False),
        Column("failed_at", UTCDateTime(), nullable=False),
        Column("replayed_at", UTCDateTime(), nullable=True),
        Index("ix_dead_letter_event_id_consumer", "event_id", "consumer"),
    )


def _idempotency(metadata: MetaData) -> Table:
    return Table(
        "idempotency_record",
        metadata,
        Column("scope", String(200), primary_key=True, comment="the caller the key belongs to"),
        Column("key", String(255), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("state", String(16), nullable=False, comment="in_flight | completed"),
        Column("locked_until", UTCDateTime(), nullable=True),
        Column("response_status", Integer, nullable=True),
        Column("response_headers", JSON_TYPE, nullable=True),
        Column("response_body", LargeBinary, nullable=True),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=False, index=True),
    )


def _task(metadata: MetaData) -> Table:
    return Table(
        "scheduled_task",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("kind", String(100), nullable=False),
        Column("payload", JSON_TYPE, nullable=False),
        Column("state", String(16), nullable=False, comment="pending | running | done | failed"),
        Column("run_at", UTCDateTime(), nullable=False),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("max_attempts", Integer, nullable=False, server_default=text("10")),
        Column("locked_by", String(100), nullable=True),
        Column("locked_until", UTCDateTime(), nullable=True),
        Column("last_error", Text, nullable=True),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("finished_at", UTCDateTime(), nullable=True),
        Index("ix_scheduled_task_state_run_at", "state", "run_at"),
    )


def _job_lease(metadata: MetaData) -> Table:
    return Table(
        "job_lease",
        metadata,
        Column("name", String(100), primary_key=True),
        Column("holder", String(100), nullable=True),
        Column("lease_until", UTCDateTime(), nullable=True),
        Column("next_run_at", UTCDateTime(), nullable=False),
        Column("last_run_at", UTCDateTime(), nullable=True),
        Column("last_error", Text, nullable=True),
    )


class KernelTables:
    """The outbox, inbox, dead letters, idempotency records, tasks and job leases."""

    def __init__(self, metadata: MetaData) -> None:
        self.metadata = metadata
        self.outbox = _outbox(metadata)
        self.inbox = _inbox(metadata)
        self.dead_letter = _dead_letter(metadata)
        self.idempotency = _idempotency(metadata)
        self.task = _task(metadata)
        self.job_lease = _job_lease(metadata)

    @property
    def all(self) -> list[Table]:
        return [
            self.outbox,
            self.inbox,
            self.dead_letter,
            self.idempotency,
            self.task,
            self.job_lease,
        ]
