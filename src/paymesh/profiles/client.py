"""How other services use profiles (wallets for holder names, risk and payments for
limits): the narrow `Profiles` protocol and its HTTP implementation."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

from paymesh.kernel.http import ServiceClient
from paymesh.profiles.schemas import Limits, Profile


class ProfilesClient(Protocol):
    async def get_profile(self, user_id: str) -> Profile:
        """Raises `RemoteServiceError` with code `profile_not_found` (404)."""
        ...

    async def get_limits(self, user_id: str) -> Limits: ...


class HttpProfiles:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def get_profile(self, user_id: str) -> Profile:
        response = await self._client.request("GET", f"/v1/profiles/{quote(user_id, safe='')}")
        return Profile.model_validate_json(response.content)

    async def get_limits(self, user_id: str) -> Limits:
        response = await self._client.request(
            "GET", f"/v1/profiles/{quote(user_id, safe='')}/limits"
        )
        return Limits.model_validate_json(response.content)
