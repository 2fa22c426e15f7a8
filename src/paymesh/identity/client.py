"""How other services use identity: where to reach a user (notifications). The narrow
protocol and its HTTP implementation."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

from paymesh.identity.otp.schemas import (
    OneTimeCode,
    OneTimeCodeCheck,
    OneTimeCodeCreate,
    OneTimeCodeVerification,
)
from paymesh.identity.schemas import Contact
from paymesh.kernel.http import ServiceClient

__all__ = [
    "Contact",
    "HttpIdentity",
    "IdentityClient",
    "OneTimeCode",
    "OneTimeCodeCheck",
    "OneTimeCodeCreate",
    "OneTimeCodeVerification",
]


class IdentityClient(Protocol):
    async def contact(self, user_id: str) -> Contact:
        """Raises `RemoteServiceError` with code `user_not_found` (404)."""
        ...

    async def contact_by_username(self, username: str) -> Contact: ...

    async def issue_code(self, request: OneTimeCodeCreate) -> OneTimeCode:
        """Raises `RemoteServiceError`: `too_many_codes` (429), `code_delivery_failed` (503)."""
        ...

    async def verify_code(self, code_id: str, check: OneTimeCodeCheck) -> OneTimeCodeVerification:
        """Raises `RemoteServiceError`: `invalid_code`, `code_locked`, `code_expired`,
        `code_used`, `purpose_mismatch`."""
        ...


class HttpIdentity:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def contact(self, user_id: str) -> Contact:
        response = await self._client.request(
            "GET", f"/v1/identity/users/{quote(user_id, safe='')}/contact"
        )
        return Contact.model_validate_json(response.content)

    async def contact_by_username(self, username: str) -> Contact:
        response = await self._client.request(
            "GET", f"/v1/identity/users/by-username/{quote(username, safe='')}/contact"
        )
        return Contact.model_validate_json(response.content)

    async def issue_code(self, request: OneTimeCodeCreate) -> OneTimeCode:
        response = await self._client.request(
            "POST", "/v1/identity/one-time-codes", json=request.model_dump(exclude_none=True)
        )
        return OneTimeCode.model_validate_json(response.content)

    async def verify_code(self, code_id: str, check: OneTimeCodeCheck) -> OneTimeCodeVerification:
        response = await self._client.request(
            "POST",
            f"/v1/identity/one-time-codes/{quote(code_id, safe='')}/verify",
            json=check.model_dump(exclude_none=True),
        )
        return OneTimeCodeVerification.model_validate_json(response.content)
