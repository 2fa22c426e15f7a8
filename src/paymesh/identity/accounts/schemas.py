"""Shapes of the self-service account endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from paymesh.identity.schemas import USERNAME_PATTERN
from paymesh.kernel.jsonutil import has_unsafe_characters

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"


def _encodable(password: SecretStr) -> SecretStr:
    """A password is hashed as UTF-8: NUL and lone surrogates cannot be part of one."""
    if has_unsafe_characters(password.get_secret_value()):
        raise ValueError("a password may not hold NUL or a lone surrogate")
    return password


Password = Annotated[SecretStr, Field(max_length=256), AfterValidator(_encodable)]


class Registration(BaseModel):
    """A self-registration: the new user gets the `customer` role."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, description="Case-insensitive; stored lower.")
    password: Password = Field(
        description="At least 12 characters, not the username or email, not a common password.",
    )
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)
    given_name: str | None = Field(default=None, max_length=150)
    family_name: str | None = Field(default=None, max_length=150)
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN, description="E.164")


class ProfileUpdate(BaseModel):
    """Fields to change; a field sent as null is cleared. A new email is unverified."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)
    given_name: str | None = Field(default=None, max_length=150)
    family_name: str | None = Field(default=None, max_length=150)
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN, description="E.164")


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: Password
    new_password: Password


class TotpEnrolment(BaseModel):
    secret: str = Field(description="Base32 secret, shown once; prefer scanning the URI.")
    otpauth_uri: str = Field(description="`otpauth://totp/...` for an authenticator app's QR code.")


class TotpCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=6, max_length=64, description="A current 6-digit code or a recovery code."
    )


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(
        description="Ten single-use codes for when the authenticator is lost; shown once."
    )
