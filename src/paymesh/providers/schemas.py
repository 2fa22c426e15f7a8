"""The providers service's public shapes: KYC checks, and the field types of an applicant's
identity data (shared with profiles, which collects that data from the customer)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from paymesh.kernel.ids import ID_PATTERN
from paymesh.providers.countries import ISO_3166_ALPHA2

DocumentType = Literal["passport", "national_id", "driving_licence"]
KycOutcome = Literal["verified", "rejected", "needs_review"]
KycCheckStatus = Literal["pending", "verified", "rejected", "needs_review"]
EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)
_JOINERS = {"\u200c", "\u200d"}  # ZWNJ/ZWJ: part of how Persian and Indic names are written
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _assigned_country(value: str) -> str:
    if value not in ISO_3166_ALPHA2:
        raise ValueError("not an assigned ISO 3166-1 alpha-2 country code")
    return value


def plain_text(value: str) -> str:
    """Printable text: no control, format (bidi overrides), private-use or unassigned
    characters, which have no place in a name or address and can disguise one."""
    for character in value:
        if unicodedata.category(character).startswith("C") and character not in _JOINERS:
            raise ValueError("holds a control or invisible character")
    return value


def _iso_date_text(value: Any) -> Any:
    """Dates only as `YYYY-MM-DD` text (not numbers, which pydantic would read as Unix
    time, nor datetimes)."""
    if not isinstance(value, str | dt.date) or (
        isinstance(value, str) and not _ISO_DATE.match(value)
    ):
        raise ValueError("a date is written YYYY-MM-DD")
    return value


def _plausible_birth_date(value: dt.date) -> dt.date:
    if value < EARLIEST_BIRTH_DATE:
        raise ValueError(f"must be on or after {EARLIEST_BIRTH_DATE.isoformat()}")
    if value >= dt.datetime.now(dt.UTC).date():
        raise ValueError("must be in the past")
    return value


CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    AfterValidator(_assigned_country),
    Field(description="ISO 3166-1 alpha-2, upper case (`GB`, `US`)."),
]
PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(plain_text),
]
BirthDate = Annotated[
    dt.date,
    BeforeValidator(_iso_date_text),
    AfterValidator(_plausible_birth_date),
    Field(description="`YYYY-MM-DD`, in the past, not before 1900."),
]
DocumentNumber = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{3,31}$"
    ),
    Field(description="Letters, digits and hyphens, 4 to 32 characters; stored upper case."),
]


class KycApplicant(BaseModel):
    """Who the customer says they are, and the document that shows it."""

    model_config = ConfigDict(extra="forbid")

    given_name: PersonName
    family_name: PersonName
    date_of_birth: BirthDate
    country: CountryCode = Field(description="Country of residence (ISO 3166-1 alpha-2).")
    document_type: DocumentType
    document_number: DocumentNumber
    document_country: CountryCode = Field(description="Issuing country of the document.")


class KycCheckCreate(KycApplicant):
    reference: str = Field(
        pattern=ID_PATTERN,
        description="The requester's own id for this check (profiles: the submission id); "
        "the same reference again returns the existing check.",
    )


class KycReason(BaseModel):
    code: str = Field(description="Machine-readable, e.g. `document_expired`.")
    detail: str | None = None


class KycCheck(BaseModel):
    id: str
    reference: str
    vendor: str
    document_type: DocumentType
    status: KycCheckStatus
    reasons: list[KycReason]
    created_at: dt.datetime
    decided_at: dt.datetime | None


class KycDecision(BaseModel):
    """`data` of the `providers.kyc.decided` event (no applicant data: the requester has it)."""

    check_id: str
    reference: str = Field(
        description="The requester's own id for the check (profiles: the submission id)."
    )
    requested_by: str = Field(description="The service that asked for the check.")
    status: KycOutcome
    reasons: list[KycReason]


class CallbackAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    check_id: str
