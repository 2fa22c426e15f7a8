"""Audit consumes every event of every service: one record each, in its source's chain.
The kernel's inbox runs each event once per consumer; the unique event id makes a second
delivery that slipped past it fail rather than add a record. Relay batches arrive through
the kernel's group commit (`Consumer.handle_batch`): one transaction per batch."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.audit.trail import AuditTrail
from paymesh.kernel.events import CloudEvent
from paymesh.kernel.runtime import ConsumerSpec, ServiceRuntime


def consumers(runtime: ServiceRuntime) -> list[ConsumerSpec]:
    trail: AuditTrail = runtime.state["trail"]

    async def record(session: AsyncSession, event: CloudEvent) -> None:
        await trail.append(session, event)

    async def record_many(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
        await trail.append_many(session, events)

    # A relay batch becomes one transaction: one chain lock and one insert per source.
    return [ConsumerSpec("audit_trail", ("*",), record, batch_handler=record_many)]
