"""KYC checks: sent to the vendor through its connector, decided by its signed callbacks.
No HTTP routing, no SQL strings; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import utcnow
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import new_id
from paymesh.providers import errors, repository
from paymesh.providers.connectors.kyc import KycVendor
from paymesh.providers.models import KycCheck as KycCheckRow
from paymesh.providers.schemas import (
    CallbackAccepted,
    KycCheck,
    KycCheckCreate,
    KycDecision,
    KycReason,
)

log = structlog.get_logger("paymesh.providers")

DECIDED_EVENT = "providers.kyc.decided"
FINAL_STATUSES = frozenset({"verified", "rejected"})


def check_view(row: KycCheckRow) -> KycCheck:
    return KycCheck(
        id=row.id,
        reference=row.reference,
        vendor=row.vendor,
        document_type=row.document_type,
        status=row.status,
        reasons=[KycReason.model_validate(reason) for reason in row.reasons],
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


class KycChecks:
    def __init__(self, vendor: KycVendor, outbox: Outbox) -> None:
        self.vendor = vendor
        self.outbox = outbox

    async def create(
        self, session: AsyncSession, requested_by: str, body: KycCheckCreate
    ) -> tuple[KycCheck, bool]:
        """Send a check to the vendor; the same reference again returns the check it made
        (a retrying requester never makes the vendor check twice)."""
        existing = await repository.find_check(session, requested_by, body.reference)
        if existing is not None:
            return check_view(existing), False
        now = utcnow()
        row = KycCheckRow(
            id=new_id("kyc"),
            requested_by=requested_by,
            reference=body.reference,
            vendor=self.vendor.name,
            document_type=body.document_type,
            status="pending",
            reasons=[],
            created_at=now,
            updated_at=now,
        )
        try:
            async with session.begin_nested():
                session.add(row)
        except IntegrityError:
            # A concurrent request with the same reference made it first.
            existing = await repository.find_check(session, requested_by, body.reference)
            if existing is None:
                raise
            return check_view(existing), False
        # The vendor may call back before this commits: the callback then finds no check
        # (404) and the vendor retries, as vendors do.
        row.vendor_check_id = await self.vendor.submit(row.id, body)
        return check_view(row), True

    async def get(self, session: AsyncSession, check_id: str) -> KycCheck:
        row = await repository.get_check(session, check_id)
        if row is None:
            raise errors.KycCheckNotFound()
        return check_view(row)

    async def receive_callback(
        self, session: AsyncSession, body: bytes, headers: Mapping[str, str]
    ) -> CallbackAccepted:
        """Apply a vendor's decision once: authentic, fresh, not seen before, for a check
        that exists and is not final. Anything else changes nothing."""
        decision = self.vendor.verify_callback(body, headers)
        # The vendor echoes our check id as its `reference`.
        row = await repository.get_check_for_update(session, decision.reference)
        if row is None or row.vendor_check_id != decision.vendor_check_id:
            raise errors.KycCheckNotFound(detail="no check matches the callback")
        now = utcnow()
        fresh = await repository.record_receipt(
            session, self.vendor.name, decision.event_id, decision.signature_sha256, now
        )
        if not fresh:
            log.warning("kyc_callback_replayed", check_id=row.id, event_id=decision.event_id)
            raise errors.CallbackReplayed()
        if row.status in FINAL_STATUSES:
            raise errors.KycCheckAlreadyDecided(detail=f"the check is already {row.status}")
        row.status = decision.status
        row.reasons = [reason.model_dump(mode="json") for reason in decision.reasons]
        row.updated_at = now
        row.decided_at = now
        event = KycDecision(
            check_id=row.id,
            reference=row.reference,
            requested_by=row.requested_by,
            status=decision.status,
            reasons=decision.reasons,
        )
        await self.outbox.add(session, DECIDED_EVENT, event.model_dump(mode="json"), row.id)
        log.info("kyc_check_decided", check_id=row.id, status=decision.status)
        return CallbackAccepted(check_id=row.id)
