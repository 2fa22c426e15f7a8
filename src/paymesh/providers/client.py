"""How other services use providers: the narrow `Providers` protocol and its HTTP
implementation (in process or over the network, through `Directory.client`)."""

from __future__ import annotations

from typing import Protocol

from paymesh.kernel.http import ServiceClient
from paymesh.providers.payouts.schemas import (
    Beneficiary,
    BeneficiaryValidation,
    Debtor,
    Payout,
    PayoutCreate,
    PayoutOutcome,
    ValidatedBeneficiary,
)
from paymesh.providers.schemas import KycCheck, KycCheckCreate

# The payout shapes live in the `payouts` sub-package; other services take them from here
# (the boundary check admits only `client` and `schemas` of another service).
__all__ = [
    "Beneficiary",
    "BeneficiaryValidation",
    "Debtor",
    "HttpProviders",
    "Payout",
    "PayoutCreate",
    "PayoutOutcome",
    "Providers",
    "ValidatedBeneficiary",
]


class Providers(Protocol):
    async def create_kyc_check(self, body: KycCheckCreate) -> KycCheck:
        """Send an applicant to the KYC vendor (pending); the same reference again returns
        the existing check. Raises `RemoteServiceError` (4xx: the data was refused) or
        `ServiceUnavailable`."""
        ...

    async def get_kyc_check(self, check_id: str) -> KycCheck: ...

    async def validate_beneficiary(self, body: BeneficiaryValidation) -> ValidatedBeneficiary:
        """The beneficiary normalised and the bank a payout would take. Raises
        `RemoteServiceError` with the precise 422 code (`invalid_iban`, `invalid_bic`,
        `iban_country_mismatch`, `unsupported_currency`, `unsupported_country`,
        `beneficiary_account_not_found`, `beneficiary_name_required`) or
        `ServiceUnavailable`."""
        ...

    async def submit_payout(self, body: PayoutCreate) -> Payout:
        """Send a payout instruction (idempotent on `payment_id`); its outcome arrives as
        `providers.payout.settled` / `.rejected` / `.timed_out`."""
        ...

    async def get_payout(self, payment_id: str) -> Payout: ...

    async def aclose(self) -> None: ...


class HttpProviders:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def create_kyc_check(self, body: KycCheckCreate) -> KycCheck:
        response = await self._client.request(
            "POST",
            "/v1/providers/kyc/checks",
            json=body.model_dump(mode="json"),
            idempotency_key=body.reference,
        )
        return KycCheck.model_validate_json(response.content)

    async def get_kyc_check(self, check_id: str) -> KycCheck:
        response = await self._client.request("GET", f"/v1/providers/kyc/checks/{check_id}")
        return KycCheck.model_validate_json(response.content)

    async def validate_beneficiary(self, body: BeneficiaryValidation) -> ValidatedBeneficiary:
        response = await self._client.request(
            "POST", "/v1/providers/beneficiaries/validate", json=body.model_dump(mode="json")
        )
        return ValidatedBeneficiary.model_validate_json(response.content)

    async def submit_payout(self, body: PayoutCreate) -> Payout:
        response = await self._client.request(
            "POST",
            "/v1/providers/payouts",
            json=body.model_dump(mode="json"),
            idempotency_key=body.payment_id,
        )
        return Payout.model_validate_json(response.content)

    async def get_payout(self, payment_id: str) -> Payout:
        response = await self._client.request("GET", f"/v1/providers/payouts/{payment_id}")
        return Payout.model_validate_json(response.content)

    async def aclose(self) -> None:
        await self._client.aclose()
