"""Every query of the providers service."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import insert_ignoring_conflicts
from paymesh.providers.models import CallbackReceipt, KycCheck


async def get_check(session: AsyncSession, check_id: str) -> KycCheck | None:
    return await session.get(KycCheck, check_id)


async def get_check_for_update(session: AsyncSession, check_id: str) -> KycCheck | None:
    return (
        await session.execute(select(KycCheck).where(KycCheck.id == check_id).with_for_update())
    ).scalar_one_or_none()


async def find_check(session: AsyncSession, requested_by: str, reference: str) -> KycCheck | None:
    return (
        await session.execute(
            select(KycCheck).where(
                KycCheck.requested_by == requested_by, KycCheck.reference == reference
            )
        )
    ).scalar_one_or_none()


async def record_receipt(
    session: AsyncSession, vendor: str, event_id: str, signature_sha256: str, now: dt.datetime
) -> bool:
    """True when neither the event id nor the signature was seen before."""
    table = CallbackReceipt.__table__
    seen = (
        await session.execute(
            select(CallbackReceipt.event_id).where(
                ((CallbackReceipt.vendor == vendor) & (CallbackReceipt.event_id == event_id))
                | (CallbackReceipt.signature_sha256 == signature_sha256)
            )
        )
    ).first()
    if seen is not None:
        return False
    # A concurrent delivery of the same callback loses here (unique keys), not later.
    inserted = await session.execute(
        insert_ignoring_conflicts(session, table).values(  # type: ignore[arg-type]
            vendor=vendor, event_id=event_id, signature_sha256=signature_sha256, received_at=now
        )
    )
    return bool(inserted.rowcount)  # type: ignore[attr-defined]


async def purge_receipts(session: AsyncSession, before: dt.datetime) -> int:
    result = await session.execute(
        delete(CallbackReceipt).where(CallbackReceipt.received_at < before)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
