"""From an event (or a service's request) to queued messages: the routing rules name the
recipient and channels, the user's preferences filter them, the current template for the
channel and locale renders them. Runs in the caller's transaction; the dispatcher sends.

A message is unique per (event id, recipient, channel): an event delivered twice, or a
request repeated with its idempotency key, queues nothing the second time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import insert_ignoring_conflicts, mark_for_commit, utcnow
from paymesh.kernel.ids import new_id
from paymesh.kernel.tables import KernelTables  # noqa: F401 - re-exported for typing
from paymesh.notifications import errors
from paymesh.notifications.catalog import Catalog, key_of
from paymesh.notifications.models import Device, Notification, Preference, notification_table
from paymesh.notifications.preferences import Preferences, allowed
from paymesh.notifications.routing import SECURITY_CATEGORIES, Route, recipient_of, routes_for
from paymesh.notifications.templating import DEFAULT_LOCALE, TemplateError, choose

log = structlog.get_logger("paymesh.notifications")

QUEUED_FLAG = "notifications_queued"


@dataclass(frozen=True)
class Queued:
    id: str
    user_id: str
    channel: str
    status: str


class Notifier:
    def __init__(self, catalog: Catalog, routes: Sequence[Route]) -> None:
        self.catalog = catalog
        self.routes = list(routes)

    def routed(self, event_type: str) -> bool:
        return bool(routes_for(event_type, self.routes))

    async def notify(
        self,
        session: AsyncSession,
        *,
        event_id: str,
        event_type: str,
        data: Mapping[str, Any],
        only_channel: str | None = None,
        subject: str | None = None,
    ) -> list[Queued]:
        """Queue every message the event calls for; answers those queued now or earlier."""
        routes = routes_for(event_type, self.routes)
        if not routes:
            return []
        templates = await self.catalog.current_for(session, event_type)
        keys = {key_of(row): row for row in templates}
        queued: list[Queued] = []
        for route in routes:
            user_id = recipient_of(route, data)
            if user_id is None:
                log.warning(
                    "notification_without_recipient", event_type=event_type, event_id=event_id
                )
                continue
            preferences = await self._preferences(session, user_id)
            for channel in route.channels:
                if only_channel is not None and channel != only_channel:
                    continue
                if not allowed(preferences, route.category, channel):
                    continue
                if channel == "push" and not await self._has_device(session, user_id):
                    continue
                key = choose(event_type, channel, DEFAULT_LOCALE, keys)
                if key is None:
                    continue
                row = await self._queue(
                    session,
                    event_id,
                    event_type,
                    route,
                    user_id,
                    channel,
                    keys[key],
                    data,
                    about=subject[:255] if subject else None,
                )
                queued.append(row)
        if queued:
            mark_for_commit(session, QUEUED_FLAG)
        return queued

    async def _preferences(self, session: AsyncSession, user_id: str) -> Preferences | None:
        stored = await session.scalar(
            select(Preference.opted_out).where(Preference.user_id == user_id)
        )
        return None if stored is None else Preferences(opted_out=stored)

    async def _has_device(self, session: AsyncSession, user_id: str) -> bool:
        return bool(await session.scalar(select(exists().where(Device.user_id == user_id))))

    async def _queue(
        self,
        session: AsyncSession,
        event_id: str,
        event_type: str,
        route: Route,
        user_id: str,
        channel: str,
        template: Any,
        data: Mapping[str, Any],
        *,
        about: str | None,
    ) -> Queued:
        now = utcnow()
        values: dict[str, Any] = {
            "id": new_id("ntf"),
            "event_id": event_id,
            "event_type": event_type,
            "about": about,
            "user_id": user_id,
            "channel": channel,
            "category": route.category,
            "locale": template.locale,
            "template_id": template.id,
            "template_version": template.version,
            "status": "queued",
            "attempts": 0,
            "next_attempt_at": now,
            "replays": 0,
            "created_at": now,
        }
        try:
            rendered = self.catalog.compiled(template).render(data)
            values.update(subject=rendered.subject, text=rendered.text, html=rendered.html)
        except TemplateError as error:
            # Nothing to send: recorded as failed (and dead-lettered) for operators to see.
            log.warning("notification_template_failed", template_id=template.id, error=str(error))
            values.update(
                status="failed",
                next_attempt_at=None,
                last_error=f"template: {error}"[:1000],
                failed_at=now,
                dead_lettered_at=now,
            )
        inserted = await session.execute(
            insert_ignoring_conflicts(session, notification_table).values(**values)
        )
        if inserted.rowcount:  # type: ignore[attr-defined]
            return Queued(values["id"], user_id, channel, values["status"])
        earlier = (
            await session.execute(
                select(Notification.id, Notification.status).where(
                    Notification.event_id == event_id,
                    Notification.user_id == user_id,
                    Notification.channel == channel,
                )
            )
        ).one()
        return Queued(earlier.id, user_id, channel, earlier.status)


def is_security(category: str) -> bool:
    return category in SECURITY_CATEGORIES


def request_event_id(caller: str, idempotency_key: str) -> str:
    """The event id of a service's direct request: its key, scoped to the caller."""
    return f"request:{caller}:{idempotency_key}"


def ensure_routed(notifier: Notifier, event_type: str) -> None:
    if not notifier.routed(event_type):
        raise errors.NoRoute(event_type=event_type)
