"""Ledger background work: expiring pending transfers whose timeout has passed."""

from __future__ import annotations

from paymesh.kernel.jobs import PeriodicJob
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.ledger.service import LedgerService


def periodic_jobs(runtime: ServiceRuntime) -> list[PeriodicJob]:
    service: LedgerService = runtime.state["ledger"]

    async def expire_pending_transfers() -> int:
        expired = 0
        while True:
            async with runtime.database.transaction() as session:
                due = await service.due_pending(session)
            # The read transaction is closed before the engine writes (SQLite has one writer).
            count = await service.expire(due) if due else 0
            expired += count
            if count == 0:
                return expired

    return [
        PeriodicJob(
            "expire_pending_transfers",
            runtime.settings.ledger.expiry_interval_seconds,
            expire_pending_transfers,
        )
    ]
