"""The events the profiles service writes: a profile made or edited, and each step of a
KYC submission (submitted, then verified, rejected or sent to an analyst)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from paymesh.kernel.event_catalog import EventData, EventType
from paymesh.providers.schemas import DocumentType

ProfileField = Literal["given_name", "family_name", "date_of_birth", "address", "country", "phone"]


class ProfileCreated(EventData):
    user_id: str


class ProfileUpdated(EventData):
    user_id: str
    fields: list[ProfileField] = Field(
        description="The profile fields the customer changed, sorted (`address` for any "
        "part of the address)."
    )


class KycSubmitted(EventData):
    user_id: str
    submission_id: str
    document_type: DocumentType


class KycVerified(EventData):
    user_id: str
    submission_id: str
    level: Literal["basic", "full"] = Field(description="The KYC level the document grants.")


class KycRejected(EventData):
    user_id: str
    submission_id: str
    reasons: list[str] = Field(
        description="Reason codes, e.g. `document_expired`; `submission_refused` when the "
        "vendor refused the data itself."
    )


class KycNeedsReview(EventData):
    user_id: str
    submission_id: str


EVENTS: tuple[EventType, ...] = (
    EventType(
        name="profiles.profile.created",
        summary="A customer's blank profile was made, on identity's event or on first use.",
        data=ProfileCreated,
    ),
    EventType(
        name="profiles.profile.updated",
        summary="The customer changed fields of their profile.",
        data=ProfileUpdated,
    ),
    EventType(
        name="profiles.kyc.submitted",
        summary="The customer submitted identity data and a document for a KYC check.",
        data=KycSubmitted,
    ),
    EventType(
        name="profiles.kyc.verified",
        summary="A KYC submission was verified and its level granted.",
        data=KycVerified,
    ),
    EventType(
        name="profiles.kyc.rejected",
        summary="A KYC submission was rejected by the vendor, or refused before a check.",
        data=KycRejected,
    ),
    EventType(
        name="profiles.kyc.needs_review",
        summary="The vendor passed a KYC submission to an analyst for a manual decision.",
        data=KycNeedsReview,
    ),
)
