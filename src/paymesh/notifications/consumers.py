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
# Sent only on a service's direct request (`POST /v1/notifications/messages`): their content
# (a one-time code) never travels in an event, so the event of the same name (identity's
# record that a code was issued, for audit) must not send a second, empty message.
DIRECT_ONLY = frozenset({"identity.otp.issued"})


def consumers(runtime: ServiceRuntime) -> list[ConsumerSpec]:
    notifier: Notifier = runtime.state["notifier"]

    async def notify(session: AsyncSession, event: CloudEvent) -> None:
        if event.type in DIRECT_ONLY:
            return
        await notifier.notify(
            session,
            event_id=event.id,
            event_type=event.type,
            data=event.data,
            subject=event.subject,
        )

    return [ConsumerSpec("notify", SUBSCRIBED, notify)]
