"""Profiles background work: sending KYC submissions to providers (a task per submission,
enqueued in the transaction that records it), and a sweep that sends again what no task
managed to send (the vendor or providers down for longer than a task's retries last)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import utcnow
from paymesh.kernel.jobs import PeriodicJob, TaskHandler
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.profiles import repository
from paymesh.profiles.kyc import SEND_TASK, KycSubmissions
from paymesh.providers.client import Providers

log = structlog.get_logger("paymesh.profiles")

RESEND_INTERVAL_SECONDS = 300.0
RESEND_AFTER = dt.timedelta(minutes=15)
"""A submission still unsent this long after it was made lost its task (retries spent while
the vendor was down): the sweep sends it. Sending twice is safe: `send` skips a submission
already sent, and providers keeps one vendor check per submission (its reference)."""


def task_handlers(runtime: ServiceRuntime) -> dict[str, TaskHandler]:
    kyc: KycSubmissions = runtime.state["kyc"]

    async def send_submission(session: AsyncSession, payload: dict[str, Any]) -> None:
        providers: Providers = runtime.state["providers"]
        await kyc.send(session, providers, str(payload["submission_id"]))

    return {SEND_TASK: send_submission}


async def resend_unsent_submissions(
    runtime: ServiceRuntime, older_than: dt.timedelta = RESEND_AFTER
) -> int:
    """Send the submissions no task managed to send; returns how many were sent."""
    kyc: KycSubmissions = runtime.state["kyc"]
    providers: Providers | None = runtime.state.get("providers")
    if providers is None:  # not started yet
        return 0
    async with runtime.database.transaction(read_only=True) as session:
        unsent = await repository.unsent_submissions(session, utcnow() - older_than, 100)
    sent = 0
    for submission_id in unsent:
        try:
            async with runtime.database.transaction() as session:
                await kyc.send(session, providers, submission_id)
        except Exception as error:  # still unreachable: the next sweep tries again
            log.warning("kyc_resend_failed", submission_id=submission_id, error=repr(error))
            break
        sent += 1
    return sent


def periodic_jobs(runtime: ServiceRuntime) -> list[PeriodicJob]:
    return [
        PeriodicJob(
            "resend_unsent_kyc_submissions",
            RESEND_INTERVAL_SECONDS,
            lambda: resend_unsent_submissions(runtime),
        )
    ]
