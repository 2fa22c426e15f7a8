"""Providers background work: forgetting vendor callbacks too old to be replayed."""

from __future__ import annotations

import datetime as dt

from paymesh.kernel.db import utcnow
from paymesh.kernel.jobs import PeriodicJob
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.providers import repository

RECEIPT_RETENTION = dt.timedelta(days=7)
"""Kept well past the signature tolerance (minutes): a replay older than the tolerance is
refused by its timestamp anyway; the margin covers clock skew and operator questions."""


def periodic_jobs(runtime: ServiceRuntime) -> list[PeriodicJob]:
    tolerance = dt.timedelta(seconds=runtime.settings.providers.kyc_callback_tolerance_seconds)

    async def purge_callback_receipts() -> int:
        async with runtime.database.transaction() as session:
            return await repository.purge_receipts(
                session, utcnow() - tolerance - RECEIPT_RETENTION
            )

    return [PeriodicJob("purge_callback_receipts", 3600, purge_callback_receipts)]
