"""Every query of payouts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import any_due, due_keys, is_postgres
from paymesh.providers.models import PayoutInstruction, PayoutStatusRecord

OPEN_STATUSES = ("submitting", "submitted")


async def find_by_payment(session: AsyncSession, payment_id: str) -> PayoutInstruction | None:
    return (
        await session.execute(
            select(PayoutInstruction).where(PayoutInstruction.payment_id == payment_id)
        )
    ).scalar_one_or_none()


async def get_for_update(session: AsyncSession, instruction_id: str) -> PayoutInstruction | None:
    return (
        await session.execute(
            select(PayoutInstruction)
            .where(PayoutInstruction.id == instruction_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def find_by_end_to_end_for_update(
    session: AsyncSession, bank: str, end_to_end_id: str
) -> PayoutInstruction | None:
    return (
        await session.execute(
            select(PayoutInstruction)
            .where(PayoutInstruction.bank == bank, PayoutInstruction.end_to_end_id == end_to_end_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def history(session: AsyncSession, instruction_id: str) -> list[PayoutStatusRecord]:
    rows = await session.execute(
        select(PayoutStatusRecord)
        .where(PayoutStatusRecord.instruction_id == instruction_id)
        .order_by(PayoutStatusRecord.recorded_at, PayoutStatusRecord.id)
    )
    return list(rows.scalars())


ANY_DUE_INSTRUCTION = any_due(
    PayoutInstruction.__table__,  # type: ignore[arg-type]
    or_(*(PayoutInstruction.status == status for status in OPEN_STATUSES)),
    PayoutInstruction.next_poll_at <= bindparam("now", type_=PayoutInstruction.next_poll_at.type),
)
"""Whether any open instruction's poll is due, for the job to ask before it claims."""


async def claim_due_instructions(
    session: AsyncSession, now: dt.datetime, lease_until: dt.datetime, limit: int
) -> list[PayoutInstruction]:
    """Open instructions whose next poll (or resend) is due, locked from other workers
    (SKIP LOCKED on PostgreSQL) and leased: their next poll moves to `lease_until`, so a
    worker that dies mid-poll only delays them."""
    due = due_keys(
        PayoutInstruction.__table__,  # type: ignore[arg-type]
        PayoutInstruction.status.in_(OPEN_STATUSES),
        PayoutInstruction.next_poll_at <= now,
        order_by=PayoutInstruction.next_poll_at,
        limit=limit,
        postgres=is_postgres(session),
    )
    rows = await session.execute(
        update(PayoutInstruction)
        .where(PayoutInstruction.id.in_(due))
        .values(next_poll_at=lease_until)
        .returning(PayoutInstruction)
        .execution_options(populate_existing=True)
    )
    return list(rows.scalars())
