"""Profiles HTTP API under /v1/profiles.

* `/me`, `/me/kyc`: the signed-in customer's own profile and KYC (role `customer`).
* `/{user_id}`, `/{user_id}/limits`: for the platform's services (role `service`) and
  operators (`ops`, `admin`); a customer may read their own, and another customer's is
  404 (whether it exists is not theirs to learn).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity.schemas import User
from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, bearer_token, current_caller, require
from paymesh.kernel.decoding import DECODING_ERRORS
from paymesh.kernel.errors import Forbidden, Unauthenticated, problem_responses
from paymesh.kernel.ids import ID_PATTERN
from paymesh.kernel.routing import SessionDep
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.profiles import errors
from paymesh.profiles.identity import IdentityAccounts
from paymesh.profiles.kyc import KycSubmissions
from paymesh.profiles.models import Profile as ProfileRow
from paymesh.profiles.schemas import (
    KycSubmission,
    KycSubmissionCreate,
    Limits,
    Profile,
    ProfileUpdate,
)
from paymesh.profiles.service import Profiles, profile_view

router = service_router(prefix="/v1/profiles", tags=["profiles"])

READER_ROLES = frozenset({"service", "ops", "admin"})
Customer = Annotated[Caller, Depends(require(roles=("customer",)))]
UserId = Annotated[str, Path(max_length=64)]
AUTH_ERRORS = (Unauthenticated, Forbidden)
_IDENTITY_ID = re.compile(ID_PATTERN)


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def profiles(request: Request) -> Profiles:
    service: Profiles = _runtime(request).state["profiles"]
    return service


async def kyc(request: Request) -> KycSubmissions:
    service: KycSubmissions = _runtime(request).state["kyc"]
    return service


ProfilesDep = Annotated[Profiles, Depends(profiles)]
KycDep = Annotated[KycSubmissions, Depends(kyc)]


async def reader_of(user_id: UserId, caller: Annotated[Caller, Depends(current_caller)]) -> str:
    """`user_id` (`me`: the caller), if the caller may read that user's profile."""
    if user_id == "me":
        user_id = caller.subject
    if caller.has_any(roles=READER_ROLES):
        return user_id
    if "customer" in caller.roles:
        if caller.subject == user_id:
            return user_id
        raise errors.ProfileNotFound()
    raise Forbidden(detail=f"requires one of roles {sorted(READER_ROLES)}, or the user's own token")


ReadableUser = Annotated[str, Depends(reader_of)]


@router.get("/me", response_model=Profile, responses=problem_responses(*AUTH_ERRORS))
async def get_my_profile(
    request: Request, session: SessionDep, service: ProfilesDep, caller: Customer
) -> Profile:
    """The signed-in customer's profile, made on first use. The email (and, while the
    profile has none, names and phone) is copied from identity."""
    row = await service.find(session, caller.subject)
    if row is not None and row.identity_synced_at is not None:
        return profile_view(row)
    runtime = _runtime(request)
    user = await _identity_user(request)
    # A GET reads in a read-only transaction: the first visit writes in one of its own.
    async with runtime.database.transaction() as writer:
        made: ProfileRow = await service.ensure(writer, caller.subject)
        if user is not None:
            service.copy_from_identity(made, user)
        return profile_view(made)


async def _identity_user(request: Request) -> User | None:
    """The caller as identity knows them, asked with the caller's own token."""
    identity: IdentityAccounts = _runtime(request).state["identity"]
    token = bearer_token(request)
    return await identity.me(token) if token else None


@router.patch(
    "/me",
    response_model=Profile,
    responses=problem_responses(*AUTH_ERRORS, *DECODING_ERRORS, errors.VerifiedIdentityLocked),
)
async def update_my_profile(
    body: ProfileUpdate,
    request: Request,
    session: SessionDep,
    service: ProfilesDep,
    caller: Customer,
) -> Profile:
    """Change the given fields (`null` clears one; `address` is replaced whole). Input is
    checked: ISO 3166-1 alpha-2 country, E.164 phone, a date of birth in the past, bounded
    printable text; anything invalid is 422 and changes nothing."""
    row = await service.update(session, caller.subject, body)
    if row.identity_synced_at is None and (user := await _identity_user(request)) is not None:
        service.copy_from_identity(row, user)
    return profile_view(row)


@router.post(
    "/me/kyc",
    status_code=202,
    response_model=KycSubmission,
    responses=problem_responses(
        *AUTH_ERRORS,
        *DECODING_ERRORS,
        errors.KycSubmissionPending,
        errors.KycUnderReview,
        errors.KycAlreadyVerified,
        errors.TooManyKycSubmissions,
    ),
)
async def submit_kyc(
    body: KycSubmissionCreate, session: SessionDep, service: KycDep, caller: Customer
) -> KycSubmission:
    """Submit identity data and a document for verification (202: the vendor decides
    later; `GET /v1/profiles/me` shows `kyc.status`). Refused while a submission is
    pending or under review, once verified unless the document grants a higher level,
    and after 5 submissions in 24 hours. Honours `Idempotency-Key`."""
    return await service.submit(session, caller.subject, body)


@router.get(
    "/{user_id}",
    response_model=Profile,
    responses=problem_responses(*AUTH_ERRORS, errors.ProfileNotFound),
)
async def get_profile(
    user_id: ReadableUser, request: Request, session: SessionDep, service: ProfilesDep
) -> Profile:
    """A user's profile, with `legal_name` for display and the KYC status and level."""
    return profile_view(await _profile_of(request, session, service, user_id))


@router.get(
    "/{user_id}/limits",
    response_model=Limits,
    responses=problem_responses(*AUTH_ERRORS, errors.ProfileNotFound),
)
async def get_limits(
    user_id: ReadableUser, request: Request, session: SessionDep, service: ProfilesDep
) -> Limits:
    """What the user's KYC level allows, in USD minor units: per transaction, per UTC day,
    per calendar month (configuration: `PAYMESH_PROFILES_LIMITS`)."""
    return service.limits(await _profile_of(request, session, service, user_id))


async def _profile_of(
    request: Request, session: AsyncSession, service: Profiles, user_id: str
) -> ProfileRow:
    """The user's profile; for a customer whose sign-up event is still on its way (a
    payment right after sign-up), the blank profile that event makes. 404 for anyone else
    without one (operators are not customers)."""
    row = await service.find(session, user_id)
    if row is not None:
        return row
    identity: IdentityAccounts = _runtime(request).state["identity"]
    # An id identity could not have issued is not passed on (its 422 would be answered).
    if not _IDENTITY_ID.fullmatch(user_id) or not await identity.is_customer(user_id):
        raise errors.ProfileNotFound()
    async with _runtime(request).database.transaction() as writer:
        return await service.ensure(writer, user_id)
