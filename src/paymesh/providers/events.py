"""The events the providers service writes: a KYC vendor's decision on a check, and the
final status of a payout instruction sent to a partner bank."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from paymesh.kernel.event_catalog import EventData, EventType
from paymesh.providers.schemas import KycOutcome


class KycReasonData(EventData):
    code: str = Field(description="Machine-readable, e.g. `document_expired`.")
    detail: str | None


class KycDecided(EventData):
    """The vendor's decision (no applicant data: the requester has it)."""

    check_id: str
    reference: str = Field(
        description="The requester's own id for the check (profiles: the submission id)."
    )
    requested_by: str = Field(description="The service that asked for the check.")
    status: KycOutcome
    reasons: list[KycReasonData]


class PayoutFinished(EventData):
    payment_id: str
    instruction_id: str = Field(description="The payout instruction sent to the bank.")
    bank: str = Field(description="The partner bank's name.")
    status: Literal["settled", "rejected", "timed_out"]
    reason_code: str | None = Field(
        description="The bank's ISO 20022 reason code, for a rejection that gave one."
    )
    reason_text: str | None = Field(
        description="The bank's reason text for a rejection, or why the payout timed out."
    )


EVENTS: tuple[EventType, ...] = (
    EventType(
        name="providers.kyc.decided",
        summary="A KYC vendor's signed callback decided a check.",
        data=KycDecided,
    ),
    EventType(
        name="providers.payout.settled",
        summary="The partner bank reported a payout instruction settled.",
        data=PayoutFinished,
    ),
    EventType(
        name="providers.payout.rejected",
        summary="The partner bank rejected a payout instruction.",
        data=PayoutFinished,
    ),
    EventType(
        name="providers.payout.timed_out",
        summary="A payout instruction had no final status from the bank by its deadline.",
        data=PayoutFinished,
    ),
)
