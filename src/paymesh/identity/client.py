"""How other services use identity: where to reach a user (notifications). The narrow
protocol and its HTTP implementation."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

from paymesh.identity.schemas import Contact
from paymesh.kernel.http import ServiceClient


class IdentityClient(Protocol):
    async def contact(self, user_id: str) -> Contact:
        """Raises `RemoteServiceError` with code `user_not_found` (404)."""
        ...


class HttpIdentity:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def contact(self, user_id: str) -> Contact:
        response = await self._client.request(
            "GET", f"/v1/identity/users/{quote(user_id, safe='')}/contact"
        )
        return Contact.model_validate_json(response.content)
