"""Payout HTTP API under /v1/providers.

* `POST /beneficiaries/validate`, `POST /payouts`, `GET /payouts/{payment_id}`: for the
  platform's services (role `service`; operators may read). Payments calls them.
* `POST /banks/{bank}/status`: a partner bank's status reports. Public at the gateway: the
  authentication is the bank's HMAC signature over the raw body and a timestamp, or its
  client certificate as the TLS proxy forwarded it (`callback_auth: mtls`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request, Response

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.decoding import DECODING_ERRORS
from paymesh.kernel.errors import Forbidden, Unauthenticated, problem_responses
from paymesh.kernel.routing import SessionDep, own_idempotency
from paymesh.providers.connectors.bank import XML_MEDIA_TYPE
from paymesh.providers.payouts import errors
from paymesh.providers.payouts.schemas import (
    BankStatusAccepted,
    BeneficiaryValidation,
    Payout,
    PayoutCreate,
    ValidatedBeneficiary,
)
from paymesh.providers.payouts.service import Payouts

router = service_router(prefix="/v1/providers", tags=["providers"])

ServiceCaller = Annotated[Caller, Depends(require(roles=("service",)))]
Reader = Annotated[Caller, Depends(require(roles=("service", "ops", "admin")))]
PaymentId = Annotated[str, Path(max_length=128)]
BankName = Annotated[str, Path(max_length=64)]
AUTH_ERRORS = (Unauthenticated, Forbidden)
ROUTING_ERRORS = (
    errors.BeneficiaryNameRequired,
    errors.InvalidIban,
    errors.InvalidBic,
    errors.IbanCountryMismatch,
    errors.UnsupportedCurrency,
    errors.UnsupportedCountry,
)
EXISTING_PAYOUT: dict[int | str, dict[str, Any]] = {
    200: {"model": Payout, "description": "The instruction made for this payment"}
}


async def payouts(request: Request) -> Payouts:
    service: Payouts = request.app.state.runtime.state["payouts"]
    return service


PayoutsDep = Annotated[Payouts, Depends(payouts)]


@router.post(
    "/beneficiaries/validate",
    response_model=ValidatedBeneficiary,
    responses=problem_responses(
        *AUTH_ERRORS,
        *ROUTING_ERRORS,
        errors.BeneficiaryAccountNotFound,
        errors.BankUnavailable,
    ),
)
async def validate_beneficiary(
    body: BeneficiaryValidation, service: PayoutsDep, _caller: ServiceCaller
) -> ValidatedBeneficiary:
    """Check a beneficiary before any money moves: the name is there, the IBAN's structure
    and checksum, that it belongs to the beneficiary's country, the BIC's format, that a
    configured partner bank pays out in the currency to the country, and the bank's own
    lookup of the account. Answers the beneficiary normalised (IBAN and BIC compact, upper
    case), the bank a payout would take and the holder's name as the bank knows it."""
    return await service.validate(body)


@router.post(
    "/payouts",
    status_code=201,
    response_model=Payout,
    responses=EXISTING_PAYOUT
    | problem_responses(
        *AUTH_ERRORS, *ROUTING_ERRORS, errors.PayoutMessageInvalid, errors.PayoutConflict
    ),
)
@own_idempotency  # keyed on payment_id: a replay must resend what is still `submitting`
async def submit_payout(
    body: PayoutCreate, service: PayoutsDep, caller: ServiceCaller, response: Response
) -> Payout:
    """Send a payout to the partner bank as an ISO 20022 pacs.008 (`amount` in minor units,
    what the beneficiary receives). The instruction is recorded `submitting` before it
    leaves; the bank's answer makes it `submitted` (waiting), `settled` or `rejected`, and
    later statuses arrive by the bank's callback or our polling (events
    `providers.payout.settled`, `.rejected`, `.timed_out`). A bank that does not answer
    leaves it `submitting`: it is resent until the bank's status timeout. The same
    `payment_id` again answers 200 with the same instruction (resent while `submitting`:
    the bank recognises its `MsgId` and `EndToEndId`); other details are a conflict."""
    payout, created = await service.submit(caller.client_id or caller.subject, body)
    response.status_code = 201 if created else 200
    return payout


@router.get(
    "/payouts/{payment_id}",
    response_model=Payout,
    responses=problem_responses(*AUTH_ERRORS, errors.PayoutNotFound),
)
async def get_payout(
    payment_id: PaymentId, session: SessionDep, service: PayoutsDep, _caller: Reader
) -> Payout:
    """A payment's payout instruction: its status, the rejection reason (ISO code and
    text) and every status the bank gave, oldest first."""
    return await service.read(session, payment_id)


@router.post(
    "/banks/{bank}/status",
    response_model=BankStatusAccepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "An ISO 20022 pacs.002.001.10 status report.",
            "content": {XML_MEDIA_TYPE: {"schema": {"type": "string"}}},
        }
    },
    responses=problem_responses(
        *DECODING_ERRORS,
        errors.BankNotFound,
        errors.InvalidBankSignature,
        errors.BankSignatureExpired,
        errors.MalformedBankMessage,
        errors.UnknownPayoutInstruction,
    ),
)
async def bank_status(
    bank: BankName, request: Request, session: SessionDep, service: PayoutsDep
) -> BankStatusAccepted:
    """A partner bank's pacs.002 status report on a payout (no bearer token: the
    `X-Bank-Signature` header, `t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>." + the raw
    body>`, authenticates it; signed more than 300 s away from now it is refused). Statuses
    only move forward: a duplicate, a replay or an out-of-order status changes nothing."""
    return await service.receive_callback(session, bank, await request.body(), request.headers)
