"""Who may see and use a quote, with real identity tokens for customers: the owner reads
it, another customer gets 404 (not 403: quote ids are not confirmed), operators and
services read any, nobody without a valid token gets anything."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.conftest import http_client
from tests.forex.factories import bearer, identity_token, quote
from tests.identity.factories import ISSUER


class TestReadQuote:
    @pytest.fixture
    async def platform(self, make_platform: Callable[..., Any], settings: Any) -> Platform:
        built: Platform = await make_platform(
            ["identity", "forex"],
            run_workers=False,
            settings_override=settings.model_copy(update={"public_url": ISSUER}),
        )
        return built

    @pytest.fixture
    async def http(self, platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
        async with http_client(platform) as client:
            client.base_url = httpx.URL(ISSUER)
            yield client

    async def test_the_owner_reads_it_another_customer_gets_404(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        alice = {"authorization": f"Bearer {await identity_token(platform, http, 'alice')}"}
        mallory = {"authorization": f"Bearer {await identity_token(platform, http, 'mallory')}"}
        body = await quote(http, alice)
        path = f"/v1/forex/quotes/{body['id']}"

        own = await http.get(path, headers=alice)
        stolen = await http.get(path, headers=mallory)
        missing = await http.get("/v1/forex/quotes/qte_01JD8X0Q3Z7YH5W9KX2M4N6P8R", headers=mallory)
        consumed = await http.post(f"{path}/consume", headers=mallory)

        assert own.status_code == 200
        assert own.json()["id"] == body["id"]
        assert stolen.status_code == 404
        assert stolen.json() | {
            "request_id": None,
            "instance": None,
            "detail": None,
        } == missing.json() | {
            "request_id": None,
            "instance": None,
            "detail": None,
        }
        assert consumed.status_code == 403

    @pytest.mark.parametrize("roles", [("ops",), ("finance",), ("auditor",), ("service",)])
    async def test_operators_and_services_read_any_quote(
        self, platform: Platform, http: httpx.AsyncClient, roles: tuple[str, ...]
    ) -> None:
        alice = {"authorization": f"Bearer {await identity_token(platform, http, 'alice')}"}
        body = await quote(http, alice)

        response = await http.get(
            f"/v1/forex/quotes/{body['id']}", headers=bearer(platform, "staff", *roles)
        )

        assert response.status_code == 200

    @pytest.mark.parametrize("token", ["none", "garbage", "expired"])
    async def test_without_a_valid_token_401(
        self, platform: Platform, http: httpx.AsyncClient, token: str
    ) -> None:
        headers = {
            "none": {},
            "garbage": {"authorization": "Bearer not-a-token"},
            "expired": {
                "authorization": "Bearer "
                + platform.tokens.issue("alice", roles=["customer"], ttl_seconds=-120)
            },
        }[token]

        response = await http.post(
            "/v1/forex/quotes", json={"from": "USD", "to": "EUR", "amount": 100}, headers=headers
        )

        assert response.status_code == 401
