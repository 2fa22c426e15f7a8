"""After the send: the SMS provider's status callbacks, and operators' replays.

Statuses only move forward (`sent → delivered | failed`), so a callback delivered twice,
late or out of order changes nothing the second time: a replayed callback is harmless,
which matters because Twilio's signature carries no timestamp.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import mark_for_commit, utcnow
from paymesh.kernel.events import Outbox
from paymesh.notifications import errors
from paymesh.notifications.models import Notification
from paymesh.notifications.service import QUEUED_FLAG, is_security

log = structlog.get_logger("paymesh.notifications")

# Twilio's MessageStatus values and what they mean here.
_DELIVERED = frozenset({"delivered", "read"})
_FAILED = frozenset({"failed", "undelivered", "canceled"})


async def apply_sms_status(
    session: AsyncSession,
    outbox: Outbox,
    *,
    message_sid: str,
    status: str,
    error_code: str | None,
) -> bool:
    """Move the message with this provider id forward; False when nothing changed."""
    if status in _DELIVERED:
        target, moment = "delivered", "delivered_at"
    elif status in _FAILED:
        target, moment = "failed", "failed_at"
    else:
        return False  # queued, sending, sent: what the send already recorded
    row = (
        await session.execute(
            select(Notification)
            .where(Notification.channel == "sms", Notification.provider_message_id == message_sid)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None or row.status != "sent":
        return False
    now = utcnow()
    values: dict[str, Any] = {"status": target, moment: now}
    if target == "failed":
        values.update(
            provider_error_code=(error_code or "")[:64] or None,
            last_error=f"carrier reported {status}",
            dead_lettered_at=now,
        )
    changed = await session.execute(
        update(Notification)
        .where(Notification.id == row.id, Notification.status == "sent")
        .values(**values)
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        return False
    await outbox.add(
        session,
        f"notifications.notification.{target}",
        {
            "id": row.id,
            "user_id": row.user_id,
            "channel": row.channel,
            "event_type": row.event_type,
            "event_id": row.event_id,
            "about": row.about,
            "attempts": row.attempts,
            "provider_message_id": message_sid,
            "error": values.get("last_error"),
        },
        subject=row.id,
    )
    return True


async def replay(session: AsyncSession, outbox: Outbox, notification_id: str) -> Notification:
    """Queue a failed (dead-lettered) message again, for a fresh set of attempts."""
    row = (
        await session.execute(
            select(Notification).where(Notification.id == notification_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise errors.NotificationNotFound()
    if row.status != "failed":
        raise errors.NotReplayable(current_status=row.status)
    if row.text is None:
        raise errors.ContentErased()
    now = utcnow()
    await session.execute(
        update(Notification)
        .where(Notification.id == row.id, Notification.status == "failed")
        .values(
            status="queued",
            attempts=0,
            next_attempt_at=now,
            locked_until=None,
            dead_lettered_at=None,
            failed_at=None,
            replays=Notification.replays + 1,
        )
    )
    await outbox.add(
        session,
        "notifications.notification.replayed",
        {"id": row.id, "user_id": row.user_id, "channel": row.channel},
        subject=row.id,
    )
    mark_for_commit(session, QUEUED_FLAG)
    await session.refresh(row)
    return row


def visible_content(row: Notification) -> bool:
    """Security messages never show their content through the API (a one-time code)."""
    return not is_security(row.category)
