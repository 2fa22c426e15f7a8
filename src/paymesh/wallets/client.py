"""How other services use wallets (payments): a wallet's owner, state and ledger account,
a user's wallet in a currency, and validation before paying. The narrow protocol and its
HTTP implementation."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

from paymesh.kernel.http import ServiceClient
from paymesh.wallets.schemas import Validation, WalletAccount


class WalletsClient(Protocol):
    async def account(self, wallet_id: str) -> WalletAccount:
        """Raises `RemoteServiceError` with code `wallet_not_found` (404)."""
        ...

    async def owned_by(self, owner_id: str, currency: str) -> WalletAccount: ...

    async def validate(self, wallet_id: str, currency: str) -> Validation: ...


class HttpWallets:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def account(self, wallet_id: str) -> WalletAccount:
        response = await self._client.request(
            "GET", f"/v1/wallets/{quote(wallet_id, safe='')}/account"
        )
        return WalletAccount.model_validate_json(response.content)

    async def owned_by(self, owner_id: str, currency: str) -> WalletAccount:
        response = await self._client.request(
            "GET", f"/v1/wallets/owners/{quote(owner_id, safe='')}/{quote(currency, safe='')}"
        )
        return WalletAccount.model_validate_json(response.content)

    async def validate(self, wallet_id: str, currency: str) -> Validation:
        response = await self._client.request(
            "GET",
            f"/v1/wallets/{quote(wallet_id, safe='')}/validation",
            params={"currency": currency},
        )
        return Validation.model_validate_json(response.content)
