"""Providers background work: forgetting vendor callbacks too old to be replayed, and
polling partner banks about payouts they have not finished (timing out the unanswered)."""

from __future__ import annotations

import datetime as dt

from paymesh.kernel.db import utcnow
from paymesh.kernel.jobs import PeriodicJob
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.providers import repository
from paymesh.providers.payouts.service import Payouts

RECEIPT_RETENTION = dt.timedelta(days=7)
"""Kept well past the signature tolerance (minutes): a replay older than the tolerance is
refused by its timestamp anyway; the margin covers clock skew and operator questions."""

POLL_JOB_MAX_INTERVAL_SECONDS = 1.0


def periodic_jobs(runtime: ServiceRuntime) -> list[PeriodicJob]:
    tolerance = dt.timedelta(seconds=runtime.settings.providers.kyc_callback_tolerance_seconds)

    async def purge_callback_receipts() -> int:
        async with runtime.database.transaction() as session:
            return await repository.purge_receipts(
                session, utcnow() - tolerance - RECEIPT_RETENTION
            )

    jobs = [PeriodicJob("purge_callback_receipts", 3600, purge_callback_receipts)]
    banks = runtime.settings.providers.banks
    if banks:
        payouts: Payouts = runtime.state["payouts"]
        # Each instruction keeps its own next poll and deadline; the job only looks for
        # those due, often enough that a deadline is kept within a second.
        interval = min(
            POLL_JOB_MAX_INTERVAL_SECONDS, *(bank.poll_interval_seconds for bank in banks)
        )
        jobs.append(PeriodicJob("poll_payouts", interval, payouts.poll_due))
    return jobs
