"""The notifications service's tables: messages (one per event, recipient and channel, with
their delivery state), template versions, preferences and push devices."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.kernel.db import UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Notification(Base):
    """One message to one user on one channel, because of one event. The unique
    (event_id, user_id, channel) makes a redelivered event send nothing twice."""

    __tablename__ = "notification"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(160))
    event_type: Mapped[str] = mapped_column(String(200))
    # What the event was about (its CloudEvents subject: a payment id), so the service it
    # came from can show the message on its own timeline.
    about: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_id: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))
    category: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(35))
    template_id: Mapped[str] = mapped_column(String(40))
    template_version: Mapped[int] = mapped_column(Integer)
    # The rendered message. Security messages (one-time codes) lose it once they are sent
    # or have failed for good: the code lives in the database only while it is on its way.
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    html: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Where it went: the address as sent (email, phone, or a device token's last 8).
    recipient: Mapped[str | None] = mapped_column(String(320), nullable=True)
    status: Mapped[str] = mapped_column(String(12))  # queued|sent|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    provider_error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dead_lettered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    replays: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("event_id", "user_id", "channel"),
        Index("ix_notification_due", "status", "next_attempt_at"),
        Index("ix_notification_user_id", "user_id", "id"),
        Index("ix_notification_provider_message_id", "channel", "provider_message_id"),
    )


class Template(Base):
    """One version of the template for (event type, channel, locale). Versions are never
    changed: an update adds the next one, and the newest is what is sent."""

    __tablename__ = "notification_template"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # one per key
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(8))
    locale: Mapped[str] = mapped_column(String(35))
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(255))

    __table_args__ = (
        UniqueConstraint("event_type", "channel", "locale", "version"),
        Index("ix_notification_template_event_type", "event_type"),
    )


class Preference(Base):
    __tablename__ = "notification_preference"

    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    opted_out: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Device(Base):
    """A push registration token of one of a user's devices."""

    __tablename__ = "notification_device"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40))
    token: Mapped[str] = mapped_column(String(4096))
    token_hash: Mapped[str] = mapped_column(String(64))  # unique: one owner per device
    platform: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("token_hash"),
        Index("ix_notification_device_user_id", "user_id"),
    )


# The Core tables, typed, for statements that bypass the ORM (leases, bulk inserts).
notification_table: Table = Notification.__table__  # type: ignore[assignment]
preference_table: Table = Preference.__table__  # type: ignore[assignment]
device_table: Table = Device.__table__  # type: ignore[assignment]
