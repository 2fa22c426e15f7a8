"""Shapes of the one-time code endpoints. No shape carries a code's hash; only the
delivery request to notifications (`service.HttpCodeDelivery`) carries the code."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PURPOSE_PATTERN = r"^[a-z][a-z0-9_.:-]{0,63}$"
USER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"
ONE_TIME_CODE_ID_PATTERN = r"^otp_[0-9A-Za-z]{1,36}$"

Channel = Literal["sms", "email"]
Status = Literal["pending", "used", "expired", "locked", "void"]


class OneTimeCodeCreate(BaseModel):
    """Send a new code to a user; it replaces any open code for the same purpose."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(pattern=USER_ID_PATTERN, description="The user (`usr_...`).")
    purpose: str = Field(
        pattern=PURPOSE_PATTERN,
        description="What the code confirms, as a short slug: `payment:pay_01...`, "
        "`login`, `phone.verify`. Verification may insist on it.",
    )
    channel: Channel | None = Field(
        default=None,
        description="`sms` or `email`; unset: the user's notification preferences decide.",
    )


class OneTimeCode(BaseModel):
    """A one-time code as identity reports it: never the code, never its hash."""

    id: str = Field(description="`otp_<ulid>`")
    user_id: str
    purpose: str
    channel: Channel | None
    status: Status = Field(
        description="`pending` (may be verified), `used`, `expired`, `locked` (no attempts "
        "left) or `void` (replaced by a newer code, or never delivered)."
    )
    attempts_left: int = Field(description="Wrong guesses still allowed.")
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None = None
    voided_at: dt.datetime | None = None


class OneTimeCodeCheck(BaseModel):
    """A guess at a code; `purpose`, when given, must be the one it was issued for."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=6, max_length=8, pattern=r"^[0-9]+$", description="The digits received."
    )
    purpose: str | None = Field(
        default=None,
        pattern=PURPOSE_PATTERN,
        description="The purpose the caller is confirming; a code issued for another "
        "purpose is refused (a code for one payment cannot confirm another).",
    )


class OneTimeCodeVerification(BaseModel):
    id: str
    verified: Literal[True] = True
    purpose: str
    user_id: str
