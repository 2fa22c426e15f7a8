"""Who may call the ledger: service accounts, admin and finance write; auditors read."""

from __future__ import annotations

import httpx
import pytest

from paymesh.kernel.auth import DevelopmentTokens
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.ledger.factories import (
    account_body,
    assert_problem,
    assert_status,
    balance_of,
    balances,
    batch,
    client_for,
    create_account,
    post_pending,
    post_transfer,
    transfer,
    transfer_body,
    unique_id,
    void_pending,
)

READ_PATHS = (
    "/v1/ledger/accounts",
    "/v1/ledger/accounts/{account}",
    "/v1/ledger/accounts/{account}/entries",
    "/v1/ledger/accounts/{account}/balance?at=2030-01-01T00:00:00Z",
    "/v1/ledger/transfers",
    "/v1/ledger/transfers?account_id={account}",
    "/v1/ledger/transfers/{transfer}",
    "/v1/ledger/trial-balance",
)


async def _fixtures(ledger: httpx.AsyncClient) -> tuple[str, str, str]:
    debit = (await create_account(ledger))["id"]
    credit = (await create_account(ledger))["id"]
    created = await transfer(ledger, debit, credit, 10, pending=True)
    return debit, credit, created["id"]


async def _writes(
    client: httpx.AsyncClient, debit: str, credit: str, pending_id: str
) -> list[httpx.Response]:
    """One attempt at every write the ledger offers."""
    return [
        await client.post("/v1/ledger/accounts", json=account_body(id=unique_id("acc"))),
        await post_transfer(client, transfer_body(debit, credit, 1)),
        await batch(client, [transfer_body(debit, credit, 1)], atomic=True),
        await post_pending(client, pending_id, 1),
        await void_pending(client, pending_id),
    ]


class TestAuthentication:
    async def test_no_token_is_unauthenticated(
        self, ledger_platform: Platform, ledger: httpx.AsyncClient
    ) -> None:
        debit, credit, pending_id = await _fixtures(ledger)
        async with http_client(ledger_platform) as anonymous:
            for path in READ_PATHS:
                url = path.format(account=debit, transfer=pending_id)
                assert_problem(await anonymous.get(url), 401, "unauthenticated")
            for response in await _writes(anonymous, debit, credit, pending_id):
                document = assert_problem(response, 401, "unauthenticated")
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert document["title"]
        assert await balances(ledger, credit) == balance_of(credits_pending=10)

    async def test_invalid_token_is_unauthenticated(self, ledger_platform: Platform) -> None:
        expired = ledger_platform.tokens.issue("usr_late", roles=["admin"], ttl_seconds=-60)
        async with http_client(ledger_platform) as client:
            for header in (
                "Bearer not-a-jwt",
                "Basic dXNlcjpwYXNz",
                "Bearer ",
                f"Bearer {expired}",
            ):
                response = await client.get(
                    "/v1/ledger/trial-balance", headers={"authorization": header}
                )

                assert_problem(response, 401, "unauthenticated")

    async def test_token_signed_with_another_key_is_unauthenticated(
        self, ledger_platform: Platform
    ) -> None:
        forger = DevelopmentTokens(
            "another-secret-of-sufficient-length-123456",
            ledger_platform.settings.token_issuer,
            ledger_platform.settings.token_audience,
        )
        token = forger.issue("usr_mallory", roles=["admin"])
        async with http_client(ledger_platform) as client:
            response = await client.get(
                "/v1/ledger/trial-balance", headers={"authorization": f"Bearer {token}"}
            )

        assert_problem(response, 401, "unauthenticated")


SERVICE_CLIENT = "service-wallets"
"""A client acting as itself (client credentials): `sub` is its client id."""


class TestAuthorization:
    @pytest.mark.parametrize(
        ("subject", "roles", "scopes"),
        [
            ("usr_x", ["customer"], None),
            ("usr_x", ["merchant"], None),
            ("usr_x", ["ops"], None),
            (SERVICE_CLIENT, [], ["wallets"]),
            # A customer whose client asked for (and somehow got) the ledger scope: a
            # delegated token acts only within the user's roles.
            ("usr_x", ["customer"], ["ledger", "ledger:write"]),
            # A finance user through a client that was not granted the ledger scope.
            ("usr_x", ["finance"], ["openid", "profile"]),
        ],
        ids=[
            "customer",
            "merchant",
            "ops",
            "other-scope",
            "customer-with-ledger-scope",
            "finance-without-ledger-scope",
        ],
    )
    async def test_callers_without_ledger_access_are_forbidden(
        self,
        ledger_platform: Platform,
        ledger: httpx.AsyncClient,
        subject: str,
        roles: list[str],
        scopes: list[str] | None,
    ) -> None:
        debit, credit, pending_id = await _fixtures(ledger)
        async with client_for(
            ledger_platform, subject=subject, roles=roles, scopes=scopes, client_id=SERVICE_CLIENT
        ) as client:
            for path in READ_PATHS:
                url = path.format(account=debit, transfer=pending_id)
                assert_problem(await client.get(url), 403, "forbidden")
            for response in await _writes(client, debit, credit, pending_id):
                assert_problem(response, 403, "forbidden")
        assert await balances(ledger, credit) == balance_of(credits_pending=10)

    @pytest.mark.parametrize(
        ("subject", "roles", "scopes"),
        [("usr_auditor", ["auditor"], None), (SERVICE_CLIENT, [], ["ledger:read"])],
        ids=["auditor", "read-scope"],
    )
    async def test_readers_can_read_but_not_write(
        self,
        ledger_platform: Platform,
        ledger: httpx.AsyncClient,
        subject: str,
        roles: list[str],
        scopes: list[str] | None,
    ) -> None:
        debit, credit, pending_id = await _fixtures(ledger)
        async with client_for(
            ledger_platform, subject=subject, roles=roles, scopes=scopes, client_id=SERVICE_CLIENT
        ) as client:
            for path in READ_PATHS:
                url = path.format(account=debit, transfer=pending_id)
                assert_status(await client.get(url), 200)
            for response in await _writes(client, debit, credit, pending_id):
                assert_problem(response, 403, "forbidden")
        assert await balances(ledger, credit) == balance_of(credits_pending=10)

    @pytest.mark.parametrize(
        ("subject", "roles", "scopes"),
        [
            ("usr_writer", ["admin"], None),
            ("usr_writer", ["finance"], None),
            ("usr_writer", ["service"], None),
            (SERVICE_CLIENT, [], ["ledger:write"]),
        ],
        ids=["admin", "finance", "service", "write-scope"],
    )
    async def test_writers_can_write(
        self,
        ledger_platform: Platform,
        ledger: httpx.AsyncClient,
        subject: str,
        roles: list[str],
        scopes: list[str] | None,
    ) -> None:
        debit, credit, pending_id = await _fixtures(ledger)
        async with client_for(
            ledger_platform, subject=subject, roles=roles, scopes=scopes, client_id=SERVICE_CLIENT
        ) as client:
            account, single, group, posted, void = await _writes(client, debit, credit, pending_id)
        assert_status(account, 201)
        assert_status(single, 201)
        assert assert_status(group, 200)["results"][0]["status"] == "created"
        assert assert_status(posted, 200)["posted_amount"] == 1
        assert_problem(void, 409, "pending_transfer_already_posted")
        assert await balances(ledger, credit) == balance_of(credits_posted=3)
