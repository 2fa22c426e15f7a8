"""Notifications live on other services' events: identity's account and security events,
profiles' KYC outcomes, wallets' money movements and, as they arrive, payments'. The
routing rules decide who hears what; the kernel's inbox runs each event once, and the
unique (event, recipient, channel) makes a delivery that slipped past it queue nothing."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.events import CloudEvent
from paymesh.kernel.runtime import ConsumerSpec, ServiceRuntime
from paymesh.notifications.service import Notifier

SUBSCRIBED = ("identity.*", "profiles.kyc.*", "wallets.*", "payments.*")


def consumers(runtime: ServiceRuntime) -> list[ConsumerSpec]:
    notifier: Notifier = runtime.state["notifier"]

    async def notify(session: AsyncSession, event: CloudEvent) -> None:
        await notifier.notify(session, event_id=event.id, event_type=event.type, data=event.data)

    return [ConsumerSpec("notify", SUBSCRIBED, notify)]
