"""Wallets background work.

* `settle_expired_holds`: a hold's ledger transfer carries the hold's timeout, so the
  ledger releases the funds by itself (its expiry job) even if this service is down; this
  job then marks such holds `expired` (event `wallets.hold.expired`) so the wallet's record
  agrees with the ledger.
* `resume_operations`: operations (and wallet openings) still pending after
  `recovery_after_seconds` belonged to a request that crashed or gave up between the two
  databases; they are taken to their end with the same ledger ids (see operations.py).
"""

from __future__ import annotations

import datetime as dt

import structlog

from paymesh.kernel.db import utcnow
from paymesh.kernel.errors import PaymeshError
from paymesh.kernel.jobs import PeriodicJob
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.wallets import repository
from paymesh.wallets.operations import Operations
from paymesh.wallets.service import WalletsService

log = structlog.get_logger("paymesh.wallets")
BATCH = 100


class WalletJobs:
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.database = runtime.database
        self.settings = runtime.settings.wallets
        self.wallets: WalletsService = runtime.state["wallets"]
        self.operations: Operations = runtime.state["operations"]

    async def settle_expired_holds(self) -> int:
        async with self.database.transaction(read_only=True) as session:
            due = [row.id for row in await repository.due_holds(session, utcnow(), BATCH)]
        settled = 0
        for hold_id in due:
            async with self.database.transaction() as session:
                settled += await self.operations.settle_hold(session, hold_id)
        return settled

    async def resume_operations(self) -> int:
        before = utcnow() - dt.timedelta(seconds=self.settings.recovery_after_seconds)
        async with self.database.transaction(read_only=True) as session:
            stale = [row.id for row in await repository.stale_operations(session, before, BATCH)]
            opening = [row.id for row in await repository.opening_wallets(session, before, BATCH)]
        for wallet_id in opening:
            async with self.database.transaction() as session:
                row = await repository.get_wallet(session, wallet_id)
                await self.wallets.finish_opening(session, row)
        resumed = 0
        for operation_id in stale:
            # The operation may commit its refusal part way (a recovery point), so this
            # session is managed by hand rather than by `transaction()`.
            async with self.database.sessions() as session:
                try:
                    row = await repository.get_operation(session, operation_id)
                    await self.operations.advance(session, row)
                except PaymeshError as error:
                    log.info("operation_resumed", id=operation_id, outcome=error.code)
                await session.commit()
                self.database.after_commit(session)
            resumed += 1
        return resumed


def periodic_jobs(runtime: ServiceRuntime) -> list[PeriodicJob]:
    jobs = WalletJobs(runtime)
    settings = runtime.settings.wallets
    return [
        PeriodicJob(
            "settle_expired_holds", settings.hold_expiry_interval_seconds, jobs.settle_expired_holds
        ),
        PeriodicJob(
            "resume_operations", settings.recovery_interval_seconds, jobs.resume_operations
        ),
    ]
