"""The review queue: `review` decisions wait here for a compliance officer, whose answer
is an event (`risk.case.approved` / `risk.case.declined`) the payments service acts on."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.auth import Caller
from paymesh.kernel.db import utcnow
from paymesh.kernel.events import Outbox
from paymesh.risk import errors, repository
from paymesh.risk.models import Case
from paymesh.risk.schemas import CaseOut, Page

CaseStatus = Literal["open", "approved", "declined"]


class Cases:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def listing(
        self, session: AsyncSession, status: CaseStatus | None, limit: int, cursor: str | None
    ) -> Page[CaseOut]:
        rows, next_cursor = await repository.cases(session, status, limit, cursor)
        return Page[CaseOut](data=[case_view(row) for row in rows], next_cursor=next_cursor)

    async def get(self, session: AsyncSession, case_id: str) -> CaseOut:
        row = await session.get(Case, case_id)
        if row is None:
            raise errors.CaseNotFound()
        return case_view(row)

    async def resolve(
        self,
        session: AsyncSession,
        caller: Caller,
        case_id: str,
        outcome: Literal["approved", "declined"],
        note: str | None,
    ) -> CaseOut:
        """Approve or decline an open case, once (the row is locked: two officers acting
        at the same moment get one answer and one 409)."""
        row = await repository.case_for_update(session, case_id)
        if row is None:
            raise errors.CaseNotFound()
        if row.status != "open":
            raise errors.CaseAlreadyResolved(detail=f"the case is {row.status}")
        row.status = outcome
        row.resolved_at = utcnow()
        row.resolved_by = caller.subject
        row.note = note
        if outcome == "declined":
            # The held payment will not move money: it stops counting against the limits.
            await repository.void_activity(session, row.transaction_id)
        await session.flush()
        await self.outbox.add(
            session,
            f"risk.case.{outcome}",
            {
                "case_id": row.id,
                "decision_id": row.decision_id,
                "transaction_id": row.transaction_id,
                "customer_id": row.customer_id,
                "resolved_by": caller.subject,
            },
            subject=row.id,
        )
        return case_view(row)


def case_view(row: Case) -> CaseOut:
    return CaseOut.model_validate(row, from_attributes=True)
