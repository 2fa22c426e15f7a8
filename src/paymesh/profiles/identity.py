"""What profiles copies from identity (email, and the names and phone a new profile starts
with), read from identity's API with the customer's own token (token relay):
`GET /v1/identity/users/me` answers for any signed-in user, and identity's events carry
only the user id."""

from __future__ import annotations

from typing import Protocol

import httpx
import structlog
from pydantic import ValidationError

from paymesh.identity.client import HttpIdentity
from paymesh.identity.schemas import User
from paymesh.kernel.errors import RemoteServiceError
from paymesh.kernel.http import ServiceClient
from paymesh.kernel.runtime import Directory

log = structlog.get_logger("paymesh.profiles.identity")


class IdentityAccounts(Protocol):
    async def me(self, bearer_token: str) -> User | None:
        """The token's user as identity knows them; None when identity cannot say now."""
        ...

    async def is_customer(self, user_id: str) -> bool:
        """Whether identity has this user, as a customer (asked as the profiles service);
        raises `RemoteServiceError` when identity cannot say."""
        ...


class HttpIdentityAccounts:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self._client: ServiceClient | None = None

    async def is_customer(self, user_id: str) -> bool:
        if self._client is None:  # made on first use: the transport exists from start
            self._client = self.directory.client("identity", caller="profiles")
        try:
            contact = await HttpIdentity(self._client).contact(user_id)
        except RemoteServiceError as error:
            if error.remote_status == 404:
                return False
            raise
        return contact.customer

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def me(self, bearer_token: str) -> User | None:
        try:
            async with self.directory.http("identity") as http:
                response = await http.get(
                    "/v1/identity/users/me", headers={"authorization": f"Bearer {bearer_token}"}
                )
        except httpx.HTTPError as error:
            log.warning("identity_unreachable", error=type(error).__name__)
            return None
        if response.status_code != 200:
            log.warning("identity_user_unavailable", status=response.status_code)
            return None
        try:
            return User.model_validate_json(response.content)
        except ValidationError:
            log.warning("identity_user_unreadable")
            return None
