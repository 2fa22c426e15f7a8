"""Events profiles acts on: identity's users (a profile per user) and the KYC vendor's
decisions relayed by providers. Each runs once per event id (the kernel's inbox)."""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.events import CloudEvent
from paymesh.kernel.runtime import ConsumerSpec, ServiceRuntime
from paymesh.profiles.kyc import KycSubmissions
from paymesh.profiles.service import Profiles
from paymesh.providers.schemas import KycDecision

log = structlog.get_logger("paymesh.profiles.consumers")

USER_MADE = ("identity.user.registered", "identity.user.created")
USER_CHANGED = ("identity.user.updated",)
KYC_DECIDED = ("providers.kyc.decided",)


def _user_id(event: CloudEvent) -> str | None:
    user_id = event.data.get("user_id")
    if isinstance(user_id, str) and 0 < len(user_id) <= 64:
        return user_id
    log.warning("event_without_user", event_id=event.id, event_type=event.type)
    return None


def consumers(runtime: ServiceRuntime) -> list[ConsumerSpec]:
    profiles: Profiles = runtime.state["profiles"]
    kyc: KycSubmissions = runtime.state["kyc"]

    async def user_made(session: AsyncSession, event: CloudEvent) -> None:
        if (user_id := _user_id(event)) is not None:
            await profiles.ensure(session, user_id)

    async def user_changed(session: AsyncSession, event: CloudEvent) -> None:
        if (user_id := _user_id(event)) is not None:
            await profiles.identity_changed(session, user_id)

    async def kyc_decided(session: AsyncSession, event: CloudEvent) -> None:
        try:
            decision = KycDecision.model_validate(event.data)
        except ValidationError:
            log.warning("kyc_decision_unreadable", event_id=event.id)
            return
        await kyc.apply_decision(session, decision)

    return [
        ConsumerSpec("identity_users", USER_MADE, user_made),
        ConsumerSpec("identity_user_changes", USER_CHANGED, user_changed),
        ConsumerSpec("kyc_decisions", KYC_DECIDED, kyc_decided),
    ]
