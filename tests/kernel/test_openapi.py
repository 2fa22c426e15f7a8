"""The merged OpenAPI document says what the server does, and a 405 names every method.

Everything goes through real HTTP (the platform behind an ASGI transport), on the
database backend of the pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.conftest import http_client


@pytest.fixture
async def platform(make_platform: Callable[..., Any]) -> Platform:
    built: Platform = await make_platform(["identity", "ledger"], run_workers=False)
    return built


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(platform) as http:
        yield http


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class TestMethodNotAllowed:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/v1/ledger/transfers", {"GET", "POST"}),
            ("/oauth2/userinfo", {"GET", "POST"}),
            ("/oauth2/logout", {"GET", "POST"}),
            ("/v1/identity/users/me", {"GET", "PATCH"}),
            ("/v1/identity/users/me/totp", {"POST", "DELETE"}),
            ("/v1/identity/users", {"GET", "POST"}),
            ("/v1/ledger/accounts/acc_1", {"GET"}),
        ],
    )
    async def test_allow_lists_every_method_of_the_path(
        self, client: httpx.AsyncClient, path: str, expected: set[str]
    ) -> None:
        response = await client.put(path, content=b"{}")

        assert response.status_code == 405
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "method_not_allowed"
        allowed = {method.strip() for method in response.headers["allow"].split(",")}
        assert allowed == expected
        # and Allow tells the truth: every other method is refused the same way
        for method in METHODS:
            answer = await client.request(method, path, content=b"{}")
            assert (answer.status_code == 405) is (method not in allowed), (method, answer.text)
