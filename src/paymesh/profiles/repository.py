"""Every query of the profiles service."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import insert_ignoring_conflicts
from paymesh.profiles.models import KycSubmission, Profile


async def get_profile(
    session: AsyncSession, user_id: str, *, for_update: bool = False
) -> Profile | None:
    query = select(Profile).where(Profile.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def insert_profile(session: AsyncSession, user_id: str, now: dt.datetime) -> bool:
    """A blank profile for `user_id`; False when it already exists (a concurrent event or
    first use made it)."""
    inserted = await session.execute(
        insert_ignoring_conflicts(session, Profile.__table__).values(  # type: ignore[arg-type]
            user_id=user_id,
            kyc_status="none",
            kyc_level="none",
            kyc_reasons=[],
            created_at=now,
            updated_at=now,
        )
    )
    return bool(inserted.rowcount)  # type: ignore[attr-defined]


async def get_submission(
    session: AsyncSession, submission_id: str, *, for_update: bool = False
) -> KycSubmission | None:
    query = select(KycSubmission).where(KycSubmission.id == submission_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def count_submissions_since(session: AsyncSession, user_id: str, since: dt.datetime) -> int:
    count = await session.execute(
        select(func.count())
        .select_from(KycSubmission)
        .where(KycSubmission.user_id == user_id, KycSubmission.created_at >= since)
    )
    return int(count.scalar_one())


async def unsent_submissions(
    session: AsyncSession, created_before: dt.datetime, limit: int
) -> list[str]:
    """Pending submissions never handed to the vendor, oldest first."""
    query = (
        select(KycSubmission.id)
        .where(
            KycSubmission.status == "pending",
            KycSubmission.provider_check_id.is_(None),
            KycSubmission.created_at < created_before,
        )
        .order_by(KycSubmission.created_at)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())
