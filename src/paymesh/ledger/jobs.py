"""Ledger background work: expiring pending transfers whose timeout has passed, and
checking the trial balance for the metrics (`paymesh_ledger_unbalanced_currencies`, which
an alert rule watches)."""

from __future__ import annotations

from paymesh.kernel.jobs import PeriodicJob
from paymesh.kernel.metrics import LEDGER_UNBALANCED
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

    async def check_trial_balance() -> int:
        async with runtime.database.transaction(read_only=True) as session:
            balance = await service.trial_balance(session)
        unbalanced = sum(1 for totals in balance.currencies if not totals.balanced)
        LEDGER_UNBALANCED.set(unbalanced)
        return unbalanced

    return [
        PeriodicJob(
            "expire_pending_transfers",
            runtime.settings.ledger.expiry_interval_seconds,
            expire_pending_transfers,
        ),
        PeriodicJob("check_trial_balance", TRIAL_BALANCE_CHECK_SECONDS, check_trial_balance),
    ]


TRIAL_BALANCE_CHECK_SECONDS = 60.0
