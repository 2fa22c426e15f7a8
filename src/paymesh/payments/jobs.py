"""Payments' background work: resume payments a crash (or a dependency down) left in a
working state, and cancel those whose code expired unanswered. Any number of processes
may run these: each transition is conditional on the state it expects."""

from __future__ import annotations

from paymesh.kernel.jobs import PeriodicJob
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.payments.reversals import Reversals
from paymesh.payments.service import Payments


def periodic_jobs(runtime: ServiceRuntime) -> list[PeriodicJob]:
    payments: Payments = runtime.state["payments"]
    reversals: Reversals = runtime.state["reversals"]
    settings = runtime.settings.payments

    async def resume() -> int:
        resumed = await payments.resume_stuck(settings.recovery_after_seconds)
        return resumed + await reversals.resume_pending(settings.recovery_after_seconds)

    return [
        PeriodicJob("resume_stuck_payments", settings.recovery_interval_seconds, resume),
        PeriodicJob(
            "cancel_expired_codes", settings.recovery_interval_seconds, payments.expire_codes
        ),
    ]
