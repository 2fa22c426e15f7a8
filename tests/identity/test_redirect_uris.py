"""Redirect URIs per OAuth 2.0 for Native Apps (RFC 8252): private-use schemes and
loopback ports for public clients with PKCE; https (and loopback http) for servers."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from paymesh.platform import Platform
from tests.identity import accounts as a
from tests.identity import factories as f

CLIENTS = "/v1/identity/clients"
NATIVE: dict[str, Any] = {
    "name": "Mobile app",
    "public": True,
    "first_party": True,
    "grant_types": ["authorization_code", "refresh_token"],
    "scopes": ["openid"],
}


@pytest.fixture
def admin(identity_platform: Platform) -> dict[str, str]:
    return a.bearer(identity_platform, "usr_admin", ("admin",))


async def register(
    client: httpx.AsyncClient, admin: dict[str, str], redirect_uri: str, **fields: Any
) -> httpx.Response:
    body = NATIVE | {"redirect_uris": [redirect_uri]} | fields
    return await client.post(CLIENTS, json=body, headers=admin)


async def code_flow(
    client: httpx.AsyncClient, client_id: str, redirect_uri: str
) -> tuple[httpx.Response, str]:
    """Sign alice in for `client_id` and exchange the code; the token response and the
    URI the browser was sent back to."""
    pkce = f.Pkce.make()
    params = f.authorize_params(client_id, pkce, redirect_uri=redirect_uri, scope="openid")
    answer = await f.login(client, params)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    query = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    assert query["state"] == params["state"], location
    token = await f.exchange_code(
        client, client_id, query["code"], pkce.verifier, redirect_uri=redirect_uri
    )
    return token, location


class TestRegisterRedirectUri:
    @pytest.mark.parametrize(
        "uri",
        [
            "com.example.app://cb",  # the README's example
            "com.example.app:/oauth2redirect",  # RFC 8252 7.1's form
            "io.paymesh.wallet-app:/callback",
            "https://app.example.com/callback",  # a claimed https URI (7.2)
            "http://127.0.0.1/callback",  # loopback (7.3)
            "http://[::1]:8400/callback",
        ],
    )
    async def test_a_native_app_may_use_rfc_8252_redirect_uris(
        self, identity: httpx.AsyncClient, admin: dict[str, str], uri: str
    ) -> None:
        response = await register(identity, admin, uri)
        assert response.status_code == 201, response.text
        assert response.json()["redirect_uris"] == [uri]

    @pytest.mark.parametrize(
        "uri",
        [
            "myapp://callback",  # not a reverse domain name
            "javascript://example.com/%0aalert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "http://example.com/callback",  # plain http off loopback
            "com.example.app://cb#fragment",
            "com.example.app:",  # nothing after the scheme
            "/relative/callback",
        ],
    )
    async def test_other_schemes_are_refused(
        self, identity: httpx.AsyncClient, admin: dict[str, str], uri: str
    ) -> None:
        response = await register(identity, admin, uri)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_client_configuration"

    async def test_a_confidential_client_may_not_use_a_private_use_scheme(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await register(identity, admin, "com.example.app://cb", public=False)
        assert response.status_code == 422, response.text
        assert "private-use" in response.json()["detail"]
        https = await register(identity, admin, "https://merchant.example/cb", public=False)
        assert https.status_code == 201, https.text


class TestCodeFlowWithNativeRedirects:
    async def test_private_use_scheme_completes_the_code_flow_with_pkce(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await f.create_user(identity_platform)
        created = (await register(identity, admin, "com.example.app://cb")).json()

        token, location = await code_flow(identity, created["client_id"], "com.example.app://cb")

        assert location.startswith("com.example.app://cb?")
        assert token.status_code == 200, token.text
        assert token.json()["access_token"]

    async def test_loopback_redirect_matches_on_any_port_for_public_clients(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await f.create_user(identity_platform)
        created = (await register(identity, admin, "http://127.0.0.1/callback")).json()

        token, location = await code_flow(
            identity, created["client_id"], "http://127.0.0.1:53117/callback"
        )

        assert location.startswith("http://127.0.0.1:53117/callback?")
        assert token.status_code == 200, token.text

    @pytest.mark.parametrize(
        "requested",
        [
            "http://127.0.0.1:53117/other",  # another path
            "http://localhost:53117/callback",  # another host
            "http://127.0.0.1:53117/callback?x=1",  # another query
            "https://127.0.0.1:53117/callback",  # another scheme
        ],
    )
    async def test_only_the_port_may_differ(
        self, identity: httpx.AsyncClient, admin: dict[str, str], requested: str
    ) -> None:
        created = (await register(identity, admin, "http://127.0.0.1/callback")).json()
        params = f.authorize_params(created["client_id"], f.Pkce.make(), redirect_uri=requested)
        page = await identity.get("/oauth2/authorize", params=params)
        assert page.status_code == 400, page.text
        assert "not registered" in page.text

    async def test_a_confidential_client_gets_exact_matching_only(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        created = await f.create_client(
            identity_platform, public=False, redirect_uris=["http://127.0.0.1:9000/callback"]
        )
        params = f.authorize_params(
            created.client_id, f.Pkce.make(), redirect_uri="http://127.0.0.1:9001/callback"
        )
        page = await identity.get("/oauth2/authorize", params=params)
        assert page.status_code == 400, page.text
