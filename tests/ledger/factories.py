"""Small typed factories and assertions for ledger tests, all through the HTTP API."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx

from paymesh.kernel.errors import PROBLEM_MEDIA_TYPE
from paymesh.platform import Platform
from tests.conftest import http_client

Flag = Literal["debits_must_not_exceed_credits", "credits_must_not_exceed_debits"]
DEBITS_LIMITED: tuple[Flag, ...] = ("debits_must_not_exceed_credits",)
CREDITS_LIMITED: tuple[Flag, ...] = ("credits_must_not_exceed_debits",)
BALANCE_FIELDS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")

_run = os.urandom(3).hex()
_counter = itertools.count()


def unique_id(prefix: str) -> str:
    """An id no other test of this run uses (tests may share a database on PostgreSQL)."""
    return f"{prefix}_{_run}_{next(_counter)}"


@asynccontextmanager
async def client_for(
    platform: Platform,
    *,
    subject: str = "service:payments",
    roles: Iterable[str] = ("service",),
    scopes: Iterable[str] | None = None,
    client_id: str = "paymesh-dev",
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on `platform` carrying a token with these roles and scopes (by
    default the scopes the roles grant). The token is a user's, used by `client_id`,
    unless `subject` is `client_id` (a client acting as itself)."""
    token = platform.tokens.issue(subject, roles=roles, scopes=scopes, client_id=client_id)
    async with http_client(platform) as client:
        client.headers["authorization"] = f"Bearer {token}"
        yield client


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem document with this status and `code`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), response.headers
    document: dict[str, Any] = response.json()
    assert document["code"] == code, document
    assert document["status"] == status, document
    return document


def assert_status(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


# -- accounts ----------------------------------------------------------------------------


def account_body(
    *,
    id: str | None = None,  # noqa: A002 - the API field
    currency: str = "USD",
    code: int = 0,
    flags: Iterable[Flag] = (),
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "currency": currency,
        "code": code,
        "flags": {flag: True for flag in flags},
        "metadata": dict(metadata or {}),
    }
    if id is not None:
        body["id"] = id
    return body


async def create_account(
    client: httpx.AsyncClient,
    *,
    id: str | None = None,  # noqa: A002 - the API field
    currency: str = "USD",
    code: int = 0,
    flags: Iterable[Flag] = (),
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Open a new account (201) and return it."""
    body = account_body(
        id=id or unique_id("acc"), currency=currency, code=code, flags=flags, metadata=metadata
    )
    return assert_status(await client.post("/v1/ledger/accounts", json=body), 201)


async def get_account(client: httpx.AsyncClient, account_id: str) -> dict[str, Any]:
    return assert_status(await client.get(f"/v1/ledger/accounts/{account_id}"), 200)


async def balances(client: httpx.AsyncClient, account_id: str) -> dict[str, int]:
    """The account's four balances, by name."""
    account = await get_account(client, account_id)
    return {name: account[name] for name in BALANCE_FIELDS}


def balance_of(
    debits_pending: int = 0,
    debits_posted: int = 0,
    credits_pending: int = 0,
    credits_posted: int = 0,
) -> dict[str, int]:
    return {
        "debits_pending": debits_pending,
        "debits_posted": debits_posted,
        "credits_pending": credits_pending,
        "credits_posted": credits_posted,
    }


# -- transfers ---------------------------------------------------------------------------


def transfer_body(
    debit_account_id: str,
    credit_account_id: str,
    amount: Any,
    *,
    id: str | None = None,  # noqa: A002 - the API field
    currency: str = "USD",
    code: int = 0,
    pending: bool = False,
    timeout_seconds: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id or unique_id("txf"),
        "debit_account_id": debit_account_id,
        "credit_account_id": credit_account_id,
        "amount": amount,
        "currency": currency,
        "code": code,
        "pending": pending,
        "metadata": dict(metadata or {}),
    }
    if timeout_seconds is not None:
        body["timeout_seconds"] = timeout_seconds
    return body


async def post_transfer(client: httpx.AsyncClient, body: Mapping[str, Any]) -> httpx.Response:
    return await client.post("/v1/ledger/transfers", json=dict(body))


async def transfer(
    client: httpx.AsyncClient,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
    *,
    id: str | None = None,  # noqa: A002 - the API field
    currency: str = "USD",
    code: int = 0,
    pending: bool = False,
    timeout_seconds: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a transfer that must succeed (201) and return it."""
    body = transfer_body(
        debit_account_id,
        credit_account_id,
        amount,
        id=id,
        currency=currency,
        code=code,
        pending=pending,
        timeout_seconds=timeout_seconds,
        metadata=metadata,
    )
    return assert_status(await post_transfer(client, body), 201)


async def fund(
    client: httpx.AsyncClient, account_id: str, amount: int, *, currency: str = "USD"
) -> dict[str, Any]:
    """Credit `account_id` with `amount` from a fresh, unguarded source account."""
    source = await create_account(client, currency=currency)
    return await transfer(client, source["id"], account_id, amount, currency=currency)


async def post_pending(
    client: httpx.AsyncClient, transfer_id: str, amount: int | None = None
) -> httpx.Response:
    body = None if amount is None else {"amount": amount}
    return await client.post(f"/v1/ledger/transfers/{transfer_id}/post", json=body)


async def void_pending(client: httpx.AsyncClient, transfer_id: str) -> httpx.Response:
    return await client.post(f"/v1/ledger/transfers/{transfer_id}/void")


async def get_transfer(client: httpx.AsyncClient, transfer_id: str) -> httpx.Response:
    return await client.get(f"/v1/ledger/transfers/{transfer_id}")


async def batch(
    client: httpx.AsyncClient, transfers: list[dict[str, Any]], *, atomic: bool
) -> httpx.Response:
    return await client.post(
        "/v1/ledger/transfers/batch", json={"transfers": transfers, "atomic": atomic}
    )


# -- reads -------------------------------------------------------------------------------


async def trial_balance(client: httpx.AsyncClient) -> dict[str, Any]:
    return assert_status(await client.get("/v1/ledger/trial-balance"), 200)


def currency_totals(trial: Mapping[str, Any], currency: str) -> dict[str, Any]:
    for item in trial["currencies"]:
        if item["currency"] == currency:
            return dict(item)
    return {
        "currency": currency,
        "debits_posted": 0,
        "credits_posted": 0,
        "debits_pending": 0,
        "credits_pending": 0,
        "balanced": True,
    }


async def assert_trial_balanced(client: httpx.AsyncClient) -> dict[str, Any]:
    trial = await trial_balance(client)
    assert trial["balanced"] is True, trial
    for item in trial["currencies"]:
        assert item["debits_posted"] == item["credits_posted"], item
        assert item["debits_pending"] == item["credits_pending"], item
        assert item["balanced"] is True, item
    return trial


async def collect_pages(
    client: httpx.AsyncClient, path: str, params: Mapping[str, Any], *, limit: int
) -> list[list[dict[str, Any]]]:
    """Follow `next_cursor` to the end; returns the pages in order."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": limit}
        if cursor is not None:
            query["cursor"] = cursor
        page = assert_status(await client.get(path, params=query), 200)
        pages.append(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000, "pagination does not terminate"
