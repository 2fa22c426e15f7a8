"""The ledger as other services see it: a narrow Protocol and its HTTP implementation.

Callers (wallets, later payments) depend on `LedgerClient`; composition code gives them
`HttpLedgerClient` on a `ServiceClient` from `Directory.client("ledger", ...)`, which goes
in process (ASGI transport) in the embedded shape and over the network otherwise.

Transfer ids are the ledger's idempotency keys: sending the same transfer (same id, same
fields) again returns the original with no second effect, and posting or voiding a pending
transfer again returns the same result. So every call here is safe to repeat, and the
requests carry an `Idempotency-Key` so the HTTP client retries them on transport errors.
Refusals arrive as `RemoteServiceError` carrying the ledger's problem `code`
(`exceeds_credits`, `pending_transfer_expired`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from paymesh.kernel.http import ServiceClient
from paymesh.ledger.schemas import (
    Account,
    AccountCreate,
    Entry,
    Page,
    Transfer,
    TransferBatch,
    TransferBatchResult,
    TransferCreate,
)


class LedgerClient(Protocol):
    async def create_account(self, account: AccountCreate) -> Account:
        """Create the account, or return it when it exists with the same fields."""
        ...

    async def get_account(self, account_id: str) -> Account: ...

    async def create_transfer(self, transfer: TransferCreate) -> Transfer:
        """Create (or, same id and fields, return) a transfer; pending when asked."""
        ...

    async def get_transfer(self, transfer_id: str) -> Transfer: ...

    async def create_batch(self, batch: TransferBatch) -> TransferBatchResult:
        """Results per transfer in order; an atomic batch applies entirely or not at all.
        The transfers' ids make a retry idempotent (`exists`)."""
        ...

    async def post_pending(self, transfer_id: str, amount: int | None = None) -> Transfer:
        """Post all of a pending transfer, or `amount` of it (the rest is released)."""
        ...

    async def void_pending(self, transfer_id: str) -> Transfer: ...

    async def list_entries(
        self, account_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[Entry]:
        """The account's statement, oldest first, with the balances after each entry."""
        ...


class HttpLedgerClient:
    """`LedgerClient` over the ledger's HTTP API."""

    def __init__(self, http: ServiceClient | Callable[[], ServiceClient]) -> None:
        """`http`, or a function that makes it on first use: in process, a runtime's
        directory can reach the ledger only once the platform has built every service."""
        self._http = http if isinstance(http, ServiceClient) else None
        self._make = None if isinstance(http, ServiceClient) else http

    @property
    def http(self) -> ServiceClient:
        if self._http is None:
            assert self._make is not None
            self._http = self._make()
        return self._http

    async def create_account(self, account: AccountCreate) -> Account:
        response = await self.http.request(
            "POST",
            "/v1/ledger/accounts",
            json=account.model_dump(mode="json", exclude_none=True),
            idempotency_key=f"account:{account.id}" if account.id else None,
        )
        return Account.model_validate_json(response.content)

    async def get_account(self, account_id: str) -> Account:
        response = await self.http.request("GET", f"/v1/ledger/accounts/{account_id}")
        return Account.model_validate_json(response.content)

    async def create_transfer(self, transfer: TransferCreate) -> Transfer:
        response = await self.http.request(
            "POST",
            "/v1/ledger/transfers",
            json=transfer.model_dump(mode="json", exclude_none=True),
            idempotency_key=f"transfer:{transfer.id}",
        )
        return Transfer.model_validate_json(response.content)

    async def get_transfer(self, transfer_id: str) -> Transfer:
        response = await self.http.request("GET", f"/v1/ledger/transfers/{transfer_id}")
        return Transfer.model_validate_json(response.content)

    async def create_batch(self, batch: TransferBatch) -> TransferBatchResult:
        # No Idempotency-Key: the transfers' ids already make a repeat answer `exists`, and
        # a key would hold a request transaction open while the group-commit writers work.
        response = await self.http.request(
            "POST",
            "/v1/ledger/transfers/batch",
            json=batch.model_dump(mode="json", exclude_none=True),
        )
        return TransferBatchResult.model_validate_json(response.content)

    async def post_pending(self, transfer_id: str, amount: int | None = None) -> Transfer:
        response = await self.http.request(
            "POST",
            f"/v1/ledger/transfers/{transfer_id}/post",
            json={} if amount is None else {"amount": amount},
            idempotency_key=f"post:{transfer_id}:{amount if amount is not None else 'all'}",
        )
        return Transfer.model_validate_json(response.content)

    async def void_pending(self, transfer_id: str) -> Transfer:
        response = await self.http.request(
            "POST",
            f"/v1/ledger/transfers/{transfer_id}/void",
            idempotency_key=f"void:{transfer_id}",
        )
        return Transfer.model_validate_json(response.content)

    async def list_entries(
        self, account_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[Entry]:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self.http.request(
            "GET", f"/v1/ledger/accounts/{account_id}/entries", params=params
        )
        return Page[Entry].model_validate_json(response.content)
