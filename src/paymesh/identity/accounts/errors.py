"""Errors of self-service accounts, named after the condition."""

from __future__ import annotations

from paymesh.identity.errors import IdentityError


class PasswordTooWeak(IdentityError):
    code = "password_too_weak"
    status = 422
    title = "The password does not meet the password policy"


class WrongCurrentPassword(IdentityError):
    code = "wrong_current_password"
    status = 403
    title = "The current password is wrong"


class NotAUser(IdentityError):
    code = "not_a_user"
    status = 403
    title = "The access token was not issued to a user of this identity service"


class TotpAlreadyEnabled(IdentityError):
    code = "totp_already_enabled"
    status = 409
    title = "TOTP is already enabled; disable it before enrolling again"


class TotpNotEnrolled(IdentityError):
    code = "totp_not_enrolled"
    status = 409
    title = "There is no TOTP enrolment waiting for confirmation"


class TotpNotEnabled(IdentityError):
    code = "totp_not_enabled"
    status = 409
    title = "TOTP is not enabled for this user"


class InvalidTotpCode(IdentityError):
    code = "invalid_totp_code"
    status = 403
    title = "The one-time code or recovery code is wrong or was already used"
