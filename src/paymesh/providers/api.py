"""Providers HTTP API under /v1/providers.

* `POST /kyc/checks`, `GET /kyc/checks/{id}`: for the platform's services (role `service`;
  operators may read). Profiles sends its customers' KYC submissions here.
* `POST /kyc/callbacks`: the KYC vendor's decisions. Public at the gateway: the
  authentication is the vendor's HMAC signature over the raw body and a timestamp.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request, Response

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.decoding import DECODING_ERRORS
from paymesh.kernel.errors import Forbidden, Unauthenticated, problem_responses
from paymesh.kernel.routing import SessionDep
from paymesh.providers import errors
from paymesh.providers.schemas import CallbackAccepted, KycCheck, KycCheckCreate
from paymesh.providers.service import KycChecks

router = service_router(prefix="/v1/providers", tags=["providers"])

ServiceCaller = Annotated[Caller, Depends(require(roles=("service",)))]
Reader = Annotated[Caller, Depends(require(roles=("service", "ops", "admin")))]
CheckId = Annotated[str, Path(max_length=64)]
AUTH_ERRORS = (Unauthenticated, Forbidden)
EXISTING_CHECK: dict[int | str, dict[str, Any]] = {
    200: {"model": KycCheck, "description": "The check made for this reference"}
}


async def kyc_checks(request: Request) -> KycChecks:
    checks: KycChecks = request.app.state.runtime.state["kyc_checks"]
    return checks


Checks = Annotated[KycChecks, Depends(kyc_checks)]


@router.post(
    "/kyc/checks",
    status_code=201,
    response_model=KycCheck,
    responses=EXISTING_CHECK
    | problem_responses(
        *AUTH_ERRORS,
        errors.KycVendorRefused,
        errors.KycVendorUnavailable,
        errors.KycVendorNotConfigured,
    ),
)
async def create_kyc_check(
    body: KycCheckCreate,
    session: SessionDep,
    checks: Checks,
    caller: ServiceCaller,
    response: Response,
) -> KycCheck:
    """Send an applicant to the KYC vendor; the answer is `pending` and the decision
    arrives later (event `providers.kyc.decided`, with this `reference`). The same
    reference from the same caller returns the existing check with 200."""
    check, created = await checks.create(session, caller.client_id or caller.subject, body)
    response.status_code = 201 if created else 200
    return check


@router.get(
    "/kyc/checks/{check_id}",
    response_model=KycCheck,
    responses=problem_responses(*AUTH_ERRORS, errors.KycCheckNotFound),
)
async def get_kyc_check(
    check_id: CheckId, session: SessionDep, checks: Checks, _caller: Reader
) -> KycCheck:
    """A KYC check and, once decided, the vendor's decision and reasons."""
    return await checks.get(session, check_id)


@router.post(
    "/kyc/callbacks",
    response_model=CallbackAccepted,
    responses=problem_responses(
        *DECODING_ERRORS,
        errors.InvalidCallbackSignature,
        errors.CallbackTimestampOutOfTolerance,
        errors.MalformedCallback,
        errors.CallbackReplayed,
        errors.KycCheckNotFound,
        errors.KycCheckAlreadyDecided,
    ),
)
async def kyc_callback(request: Request, session: SessionDep, checks: Checks) -> CallbackAccepted:
    """The KYC vendor's decision on a check (no bearer token: the `Kyc-Signature` header,
    HMAC-SHA256 over `Kyc-Timestamp` + "." + the raw body, authenticates it). Refused,
    changing nothing: a bad signature, a timestamp outside the tolerance, a callback seen
    before, a check that does not exist (yet: the vendor retries) or is already final."""
    return await checks.receive_callback(session, await request.body(), request.headers)
