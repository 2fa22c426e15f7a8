"""Errors of one-time codes, named after the condition."""

from __future__ import annotations

from paymesh.identity.errors import IdentityError


class OneTimeCodeNotFound(IdentityError):
    code = "one_time_code_not_found"
    status = 404
    title = "One-time code not found"


class UserDisabled(IdentityError):
    code = "user_disabled"
    status = 422
    title = "The user is disabled and may not be sent codes"


class ChannelUnavailable(IdentityError):
    code = "channel_unavailable"
    status = 422
    title = "The user has no phone number or email address for the requested channel"


class TooManyCodes(IdentityError):
    code = "too_many_codes"
    status = 429
    title = "Too many one-time codes were sent to this user recently; try again later"


class CodeDeliveryFailed(IdentityError):
    code = "code_delivery_failed"
    status = 503
    title = "The one-time code could not be sent; it was voided"


class InvalidCode(IdentityError):
    code = "invalid_code"
    status = 422
    title = "The one-time code is wrong"


class CodeLocked(IdentityError):
    code = "code_locked"
    status = 429
    title = "Too many wrong guesses: the one-time code is locked; ask for a new one"


class CodeExpired(IdentityError):
    code = "code_expired"
    status = 410
    title = "The one-time code has expired; ask for a new one"


class CodeVoided(IdentityError):
    code = "code_voided"
    status = 410
    title = "The one-time code was replaced by a newer one or could not be sent"


class CodeUsed(IdentityError):
    code = "code_used"
    status = 409
    title = "The one-time code was already used"


class PurposeMismatch(IdentityError):
    code = "purpose_mismatch"
    status = 422
    title = "The one-time code was issued for another purpose"
