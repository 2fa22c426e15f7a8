"""Profiles background work: sending KYC submissions to providers (a task per submission,
enqueued in the transaction that records it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.jobs import TaskHandler
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.profiles.kyc import SEND_TASK, KycSubmissions
from paymesh.providers.client import Providers


def task_handlers(runtime: ServiceRuntime) -> dict[str, TaskHandler]:
    kyc: KycSubmissions = runtime.state["kyc"]

    async def send_submission(session: AsyncSession, payload: dict[str, Any]) -> None:
        providers: Providers = runtime.state["providers"]
        await kyc.send(session, providers, str(payload["submission_id"]))

    return {SEND_TASK: send_submission}
