"""How other services use providers: the narrow `Providers` protocol and its HTTP
implementation (in process or over the network, through `Directory.client`)."""

from __future__ import annotations

from typing import Protocol

from paymesh.kernel.http import ServiceClient
from paymesh.providers.schemas import KycCheck, KycCheckCreate


class Providers(Protocol):
    async def create_kyc_check(self, body: KycCheckCreate) -> KycCheck:
        """Send an applicant to the KYC vendor (pending); the same reference again returns
        the existing check. Raises `RemoteServiceError` (4xx: the data was refused) or
        `ServiceUnavailable`."""
        ...

    async def get_kyc_check(self, check_id: str) -> KycCheck: ...

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

    async def aclose(self) -> None:
        await self._client.aclose()
