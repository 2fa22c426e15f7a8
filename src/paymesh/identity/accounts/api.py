"""Self-service endpoints under `/v1/identity/users`: public registration, and the
signed-in user's profile, password and TOTP second factor (`/users/me...`, for the
subject of the bearer token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request, Response

from paymesh.identity import errors as identity_errors
from paymesh.identity.accounts import errors, service
from paymesh.identity.accounts.schemas import (
    PasswordChange,
    ProfileUpdate,
    RecoveryCodes,
    Registration,
    TotpCode,
    TotpEnrolment,
)
from paymesh.identity.models import User as UserRow
from paymesh.identity.schemas import Contact, User
from paymesh.identity.security import Cipher
from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, current_caller, require
from paymesh.kernel.errors import Unauthenticated, problem_responses
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import ID_PATTERN
from paymesh.kernel.routing import SessionDep

router = service_router(prefix="/v1/identity/users", tags=["identity: users"])


def outbox(request: Request) -> Outbox:
    result: Outbox = request.app.state.runtime.outbox
    return result


def cipher(request: Request) -> Cipher:
    result: Cipher = request.app.state.runtime.state["provider"].cipher
    return result


OutboxDep = Annotated[Outbox, Depends(outbox)]
CipherDep = Annotated[Cipher, Depends(cipher)]


async def me(session: SessionDep, caller: Annotated[Caller, Depends(current_caller)]) -> UserRow:
    return await service.current_user(session, caller.subject)


Me = Annotated[UserRow, Depends(me)]
ME_ERRORS = (Unauthenticated, errors.NotAUser, identity_errors.AccountDisabled)


@router.post(
    "",
    status_code=201,
    response_model=User,
    responses=problem_responses(
        errors.PasswordTooWeak, identity_errors.UsernameTaken, identity_errors.EmailTaken
    ),
)
async def register(body: Registration, session: SessionDep, events: OutboxDep) -> User:
    """Self-registration (no token needed): creates an active user with the `customer`
    role. The password needs 12 characters or more, may not be the username or email,
    and may not be a common password. Honours `Idempotency-Key`."""
    return await service.register(session, events, body)


@router.get("/me", response_model=User, responses=problem_responses(*ME_ERRORS))
async def get_me(session: SessionDep, user: Me) -> User:
    """The user the bearer token was issued to."""
    return await service.user_view(session, user)


@router.patch(
    "/me",
    response_model=User,
    responses=problem_responses(*ME_ERRORS, identity_errors.EmailTaken),
)
async def update_me(body: ProfileUpdate, session: SessionDep, user: Me, events: OutboxDep) -> User:
    """Change names, phone or email. A changed email is no longer verified."""
    return await service.update_profile(session, events, user, body)


@router.post(
    "/me/password",
    status_code=204,
    responses=problem_responses(*ME_ERRORS, errors.WrongCurrentPassword, errors.PasswordTooWeak),
)
async def change_password(
    body: PasswordChange, session: SessionDep, user: Me, events: OutboxDep
) -> Response:
    """Change the password (the current one is required). Every refresh token of the user
    is revoked: other sessions must sign in again."""
    await service.change_password(session, events, user, body)
    return Response(status_code=204)


@router.post(
    "/me/totp",
    status_code=201,
    response_model=TotpEnrolment,
    responses=problem_responses(*ME_ERRORS, errors.TotpAlreadyEnabled),
)
async def enrol_totp(
    session: SessionDep, user: Me, events: OutboxDep, keys: CipherDep, response: Response
) -> TotpEnrolment:
    """Start TOTP enrolment: the secret and its `otpauth://` URI, shown this once. Login
    does not ask for codes until the enrolment is confirmed with a first code."""
    response.headers["cache-control"] = "no-store"
    return await service.enrol_totp(session, events, keys, user)


@router.post(
    "/me/totp/confirm",
    response_model=RecoveryCodes,
    responses=problem_responses(*ME_ERRORS, errors.TotpNotEnrolled, errors.InvalidTotpCode),
)
async def confirm_totp(
    body: TotpCode,
    session: SessionDep,
    user: Me,
    events: OutboxDep,
    keys: CipherDep,
    response: Response,
) -> RecoveryCodes:
    """Activate TOTP with a first valid code. Returns ten single-use recovery codes, shown
    this once and stored hashed; from now on login asks for a code."""
    response.headers["cache-control"] = "no-store"
    return await service.confirm_totp(session, events, keys, user, body.code)


@router.delete(
    "/me/totp",
    status_code=204,
    responses=problem_responses(*ME_ERRORS, errors.TotpNotEnabled, errors.InvalidTotpCode),
)
async def disable_totp(
    body: TotpCode, session: SessionDep, user: Me, events: OutboxDep, keys: CipherDep
) -> Response:
    """Turn TOTP off; needs a current code or an unused recovery code."""
    await service.disable_totp(session, events, keys, user, body.code)
    return Response(status_code=204)


@router.get(
    "/by-username/{username}/contact",
    response_model=Contact,
    responses=problem_responses(identity_errors.UserNotFound),
)
async def get_contact_by_username(
    username: Annotated[str, Path(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9._@+-]+$")],
    session: SessionDep,
    _caller: Annotated[Caller, Depends(require(roles={"service"}))],
) -> Contact:
    """The user with this username (payments to a username): services only, so the
    directory of users is not open to customers."""
    return await service.contact_by_username(session, username)


@router.get(
    "/{user_id}/contact",
    response_model=Contact,
    responses=problem_responses(identity_errors.UserNotFound),
)
async def get_contact(
    user_id: Annotated[str, Path(pattern=ID_PATTERN)],
    session: SessionDep,
    _caller: Annotated[Caller, Depends(require(roles={"service"}))],
) -> Contact:
    """Where to reach a user: the email and phone identity owns, and whether the account
    is active. For services only (notifications resolves addresses here at send time)."""
    return await service.contact(session, user_id)
