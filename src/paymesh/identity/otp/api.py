"""One-time codes under `/v1/identity/one-time-codes`: other services (role `service`)
have identity send a user a code out of band and check the user's answer, for instance
the payments service's step-up before a payment; ops and admins may look a code's state
up. No endpoint ever returns a code or its hash."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from paymesh.identity import errors as identity_errors
from paymesh.identity.otp import errors
from paymesh.identity.otp.schemas import (
    OneTimeCode,
    OneTimeCodeCheck,
    OneTimeCodeCreate,
    OneTimeCodeVerification,
)
from paymesh.identity.otp.service import OneTimeCodes
from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.errors import Forbidden, Unauthenticated, problem_responses
from paymesh.kernel.routing import SessionDep, state_dependency

router = service_router(prefix="/v1/identity/one-time-codes", tags=["identity: one-time codes"])

ServiceCaller = Annotated[Caller, Depends(require(roles=("service",)))]
Reader = Annotated[Caller, Depends(require(roles=("service", "ops", "admin")))]
Codes = Annotated[OneTimeCodes, Depends(state_dependency("one_time_codes", OneTimeCodes))]
CodeId = Annotated[str, Path(max_length=40, description="`otp_<ulid>`")]
AUTH_ERRORS = (Unauthenticated, Forbidden)


@router.post(
    "",
    status_code=201,
    response_model=OneTimeCode,
    responses=problem_responses(
        *AUTH_ERRORS,
        identity_errors.UserNotFound,
        errors.UserDisabled,
        errors.ChannelUnavailable,
        errors.TooManyCodes,
        errors.CodeDeliveryFailed,
    ),
)
async def issue_code(body: OneTimeCodeCreate, caller: ServiceCaller, codes: Codes) -> OneTimeCode:
    """Send the user a new one-time code (`PAYMESH_IDENTITY_OTP_DIGITS` digits, 6 by
    default) by SMS or email through the notifications service, valid for
    `PAYMESH_IDENTITY_OTP_TTL_SECONDS` (300) and `PAYMESH_IDENTITY_OTP_MAX_ATTEMPTS` (5)
    guesses. An open code of the same user for the same `purpose` is voided. At most
    `PAYMESH_IDENTITY_OTP_ISSUE_LIMIT` (5) codes per user every
    `PAYMESH_IDENTITY_OTP_ISSUE_WINDOW_SECONDS` (900): then 429 `too_many_codes`. When
    notifications does not accept the message the code is voided and the answer is 503
    `code_delivery_failed`: ask for a new one. Role `service`."""
    return await codes.issue(caller, body)


@router.post(
    "/{code_id}/verify",
    response_model=OneTimeCodeVerification,
    responses=problem_responses(
        *AUTH_ERRORS,
        errors.OneTimeCodeNotFound,
        errors.PurposeMismatch,
        errors.InvalidCode,
        errors.CodeLocked,
        errors.CodeExpired,
        errors.CodeVoided,
        errors.CodeUsed,
    ),
)
async def verify_code(
    code_id: CodeId, body: OneTimeCodeCheck, caller: ServiceCaller, codes: Codes
) -> OneTimeCodeVerification:
    """Check the digits the user typed. Right: the code is used up (once only; again is
    409 `code_used`). Wrong: 422 `invalid_code` with `attempts_left`; when none are left
    the code is locked (429 `code_locked`). Expired or voided: 410. With `purpose`, a code
    issued for another purpose is refused (422 `purpose_mismatch`) and keeps its attempts.
    Role `service`."""
    return await codes.verify(caller, code_id, body)


@router.get(
    "/{code_id}",
    response_model=OneTimeCode,
    responses=problem_responses(*AUTH_ERRORS, errors.OneTimeCodeNotFound),
)
async def get_code(
    code_id: CodeId, session: SessionDep, caller: Reader, codes: Codes
) -> OneTimeCode:
    """A code's state: `pending`, `used`, `expired`, `locked` or `void`. Roles `service`,
    `ops`, `admin`."""
    return await codes.get(session, code_id)
