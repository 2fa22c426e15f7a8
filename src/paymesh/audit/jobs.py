"""Audit's background work: seal a checkpoint over every chain's head, and prune records
past retention (sealing what was pruned, so the trail stays verifiable)."""

from __future__ import annotations

import datetime as dt

import structlog

from paymesh.audit.trail import AuditTrail
from paymesh.kernel.db import utcnow
from paymesh.kernel.jobs import PeriodicJob
from paymesh.kernel.runtime import ServiceRuntime

log = structlog.get_logger("paymesh.audit")


def periodic_jobs(runtime: ServiceRuntime) -> list[PeriodicJob]:
    trail: AuditTrail = runtime.state["trail"]
    settings = runtime.settings.audit

    async def seal() -> int:
        async with runtime.database.transaction() as session:
            identifier = await trail.seal(session)
            digest = await trail.checkpoint_digest(session, identifier)
        # Logged so that a copy of each seal lives outside the database: someone able to
        # rewrite the tables could recompute every hash, but not these lines.
        log.info("audit_checkpoint_sealed", checkpoint=identifier, hash=digest)
        return identifier

    async def prune() -> int:
        if settings.retention_days <= 0:
            return 0
        before = utcnow() - dt.timedelta(days=settings.retention_days)
        async with runtime.database.transaction() as session:
            return await trail.prune(session, before)

    return [
        PeriodicJob("seal_checkpoint", settings.checkpoint_interval_seconds, seal),
        PeriodicJob("prune_past_retention", 3600.0, prune),
    ]
