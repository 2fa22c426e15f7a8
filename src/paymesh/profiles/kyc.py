"""KYC rules: a customer submits identity data and a document reference; profiles sends it
to the providers service (a task, after the submission commits), whose vendor decides
later; the decision arrives as the `providers.kyc.decided` event.

Resubmission: not while a submission is pending or with an analyst (`needs_review`); after
a rejection, yes; once verified, only with a document that grants a higher level (a
driving licence grants `basic`, a passport or national ID `full`, by configuration); at
most `MAX_SUBMISSIONS_PER_DAY` in 24 hours (each one costs a vendor check). A failed
upgrade leaves the level already granted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.config import ProfilesSettings
from paymesh.kernel.db import utcnow
from paymesh.kernel.errors import RemoteServiceError
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import new_id
from paymesh.profiles import errors, repository
from paymesh.profiles.models import KycSubmission as SubmissionRow
from paymesh.profiles.models import Profile as ProfileRow
from paymesh.profiles.schemas import KycSubmission, KycSubmissionCreate
from paymesh.profiles.service import LEVEL_RANK, Profiles
from paymesh.providers.client import Providers
from paymesh.providers.schemas import KycCheckCreate, KycDecision, KycReason

log = structlog.get_logger("paymesh.profiles.kyc")

SEND_TASK = "kyc.send"
MAX_SUBMISSIONS_PER_DAY = 5
EVENTS = {
    "pending": "profiles.kyc.submitted",
    "verified": "profiles.kyc.verified",
    "rejected": "profiles.kyc.rejected",
    "needs_review": "profiles.kyc.needs_review",
}
REFUSED_STATUSES = frozenset({400, 422})
"""What providers answers when the vendor refuses the data itself: final, not retried."""

Enqueue = Callable[[AsyncSession, str, dict[str, Any]], Awaitable[str]]


def masked(document_number: str) -> str:
    """The last four characters, when there are enough others to hide."""
    return "****" + document_number[-4:] if len(document_number) >= 8 else "****"


def submission_view(row: SubmissionRow) -> KycSubmission:
    return KycSubmission(
        id=row.id,
        status=row.status,
        given_name=row.given_name,
        family_name=row.family_name,
        date_of_birth=row.date_of_birth,
        country=row.country,
        document_type=row.document_type,
        document_number=masked(row.document_number),
        document_country=row.document_country,
        level_granted=row.level_granted,
        reasons=[KycReason.model_validate(reason) for reason in row.reasons],
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


class KycSubmissions:
    def __init__(
        self, profiles: Profiles, settings: ProfilesSettings, outbox: Outbox, enqueue: Enqueue
    ) -> None:
        self.profiles = profiles
        self.settings = settings
        self.outbox = outbox
        self.enqueue = enqueue

    def _may_submit(self, profile: ProfileRow, body: KycSubmissionCreate) -> None:
        if profile.kyc_status == "pending":
            raise errors.KycSubmissionPending()
        if profile.kyc_status == "needs_review":
            raise errors.KycUnderReview()
        granted = self.settings.kyc_level_by_document[body.document_type]
        if LEVEL_RANK[granted] <= LEVEL_RANK[profile.kyc_level]:
            raise errors.KycAlreadyVerified(
                detail=f"already verified at level {profile.kyc_level}; a {body.document_type} "
                f"grants {granted}"
            )

    async def submit(
        self, session: AsyncSession, user_id: str, body: KycSubmissionCreate
    ) -> KycSubmission:
        profile = await self.profiles.ensure(session, user_id)  # locked: one submission at once
        self._may_submit(profile, body)
        now = utcnow()
        recent = await repository.count_submissions_since(
            session, user_id, now - dt.timedelta(days=1)
        )
        if recent >= MAX_SUBMISSIONS_PER_DAY:
            raise errors.TooManyKycSubmissions()
        row = SubmissionRow(
            id=new_id("kys"),
            user_id=user_id,
            status="pending",
            reasons=[],
            created_at=now,
            **body.model_dump(),
        )
        session.add(row)
        profile.kyc_status = "pending"
        profile.kyc_reasons = []
        profile.kyc_submission_id = row.id
        profile.updated_at = now
        data = {"user_id": user_id, "submission_id": row.id, "document_type": row.document_type}
        await self.outbox.add(session, EVENTS["pending"], data, user_id)
        await self.enqueue(session, SEND_TASK, {"submission_id": row.id})
        await session.flush()
        return submission_view(row)

    async def send(self, session: AsyncSession, providers: Providers, submission_id: str) -> None:
        """The task: hand a pending submission to providers (retried while providers or
        the vendor is unavailable; the reference makes retries safe)."""
        row = await repository.get_submission(session, submission_id, for_update=True)
        if row is None or row.status != "pending" or row.provider_check_id is not None:
            return
        applicant = KycCheckCreate(
            reference=row.id,
            given_name=row.given_name,
            family_name=row.family_name,
            date_of_birth=row.date_of_birth,
            country=row.country,
            document_type=row.document_type,
            document_number=row.document_number,
            document_country=row.document_country,
        )
        try:
            check = await providers.create_kyc_check(applicant)
        except RemoteServiceError as error:
            if error.remote_status not in REFUSED_STATUSES:
                raise
            log.warning("kyc_submission_refused", submission_id=row.id, code=error.remote_code)
            reason = KycReason(code="submission_refused", detail=error.detail[:200])
            await self._decide(session, row, "rejected", [reason])
            return
        row.provider_check_id = check.id
        row.sent_at = utcnow()

    async def apply_decision(self, session: AsyncSession, decision: KycDecision) -> None:
        """The vendor's decision, once: a decision for an unknown or already final
        submission changes nothing."""
        row = await repository.get_submission(session, decision.reference, for_update=True)
        if row is None or row.provider_check_id not in (None, decision.check_id):
            log.info("kyc_decision_not_ours", check_id=decision.check_id)
            return
        if row.status in ("verified", "rejected"):
            return
        row.provider_check_id = decision.check_id
        await self._decide(session, row, decision.status, decision.reasons)

    async def _decide(
        self, session: AsyncSession, row: SubmissionRow, status: str, reasons: list[KycReason]
    ) -> None:
        now = utcnow()
        row.status = status
        row.reasons = [reason.model_dump(mode="json") for reason in reasons]
        row.decided_at = now
        data: dict[str, Any] = {"user_id": row.user_id, "submission_id": row.id}
        if status == "verified":
            row.level_granted = data["level"] = self.settings.kyc_level_by_document[
                row.document_type  # type: ignore[index]
            ]
        if status == "rejected":
            data["reasons"] = [reason.code for reason in reasons]
        profile = await repository.get_profile(session, row.user_id, for_update=True)
        if profile is not None:
            self._apply_to_profile(profile, row, now)
        await self.outbox.add(session, EVENTS[status], data, row.user_id)
        log.info("kyc_decided", submission_id=row.id, status=status)

    def _apply_to_profile(self, profile: ProfileRow, row: SubmissionRow, now: dt.datetime) -> None:
        if row.status == "verified" and row.level_granted is not None:
            if LEVEL_RANK[row.level_granted] > LEVEL_RANK[profile.kyc_level]:
                profile.kyc_level = row.level_granted
            # The verified identity is the legal one from now on.
            profile.given_name = row.given_name
            profile.family_name = row.family_name
            profile.date_of_birth = row.date_of_birth
            profile.country = profile.country or row.country
        if profile.kyc_submission_id == row.id:
            profile.kyc_status = row.status
            profile.kyc_reasons = list(row.reasons)
        profile.updated_at = now
