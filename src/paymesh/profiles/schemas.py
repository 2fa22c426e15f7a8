"""Profiles' public shapes: the profile (`ProfileUpdate` in, `Profile` out), KYC
submissions and status, and the limits of a KYC level."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from paymesh.providers.schemas import (
    BirthDate,
    CountryCode,
    DocumentType,
    KycApplicant,
    KycReason,
    PersonName,
    plain_text,
)

KycStatus = Literal["none", "pending", "verified", "rejected", "needs_review"]
KycLevel = Literal["none", "basic", "full"]
SubmissionStatus = Literal["pending", "verified", "rejected", "needs_review"]


AddressLine = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(plain_text),
]
Locality = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(plain_text),
]
PostalCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_upper=True,
        pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9 -]{0,18}[A-Za-z0-9])?$",
    ),
]
Phone = Annotated[
    str,
    StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$"),
    Field(description="E.164: `+` and 7 to 15 digits, e.g. `+447700900123`."),
]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line1: AddressLine
    line2: AddressLine | None = None
    city: Locality
    region: Locality | None = None
    postal_code: PostalCode | None = None


class ProfileUpdate(BaseModel):
    """Fields to change; a field sent as `null` is cleared. `email` belongs to identity
    (`PATCH /v1/identity/users/me`). Once KYC has verified the customer, the legal name and
    date of birth change only through a new KYC submission."""

    model_config = ConfigDict(extra="forbid")

    given_name: PersonName | None = None
    family_name: PersonName | None = None
    date_of_birth: BirthDate | None = None
    address: Address | None = None
    country: CountryCode | None = Field(
        default=None, description="Country of residence (ISO 3166-1 alpha-2)."
    )
    phone: Phone | None = None


class Kyc(BaseModel):
    status: KycStatus = Field(description="Of the latest submission (`none`: never submitted).")
    level: KycLevel = Field(description="What verified submissions have granted so far.")
    reasons: list[KycReason] = Field(description="Why the latest submission was not verified.")
    submission_id: str | None


class Profile(BaseModel):
    user_id: str
    legal_name: str | None = Field(
        description="`given_name family_name` for display (wallets mask it), or null."
    )
    given_name: str | None
    family_name: str | None
    date_of_birth: dt.date | None
    address: Address | None
    country: str | None
    phone: str | None
    email: str | None = Field(description="Copied from identity, which owns it.")
    kyc: Kyc
    created_at: dt.datetime
    updated_at: dt.datetime


class KycSubmissionCreate(KycApplicant):
    """The customer's identity data and a reference to their document."""


class KycSubmission(BaseModel):
    id: str
    status: SubmissionStatus
    given_name: str
    family_name: str
    date_of_birth: dt.date
    country: str
    document_type: DocumentType
    document_number: str = Field(description="Masked: only the last 4 characters are shown.")
    document_country: str
    level_granted: KycLevel | None
    reasons: list[KycReason]
    created_at: dt.datetime
    decided_at: dt.datetime | None


class Limits(BaseModel):
    user_id: str
    kyc_level: KycLevel
    currency: Literal["USD"] = Field(default="USD", description="The limits' currency.")
    per_transaction: int = Field(description="Largest single payment, USD minor units (cents).")
    daily: int = Field(description="Total per UTC day, USD minor units.")
    monthly: int = Field(description="Total per calendar month (UTC), USD minor units.")
