"""The demo web app's pages (`/demo/login`, `/demo/callback`): the demo client's redirect
URI is a page that completes the code flow with PKCE, where demo data was seeded only."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from paymesh.identity.demo import DEMO_PASSWORD, web_app
from paymesh.platform import Platform
from tests.identity import factories as f

CALLBACK = f"{f.ISSUER}/demo/callback"


def script_hashes(response: httpx.Response) -> str:
    policy = response.headers["content-security-policy"]
    match = re.search(r"script-src ([^;]+);", policy)
    assert match is not None, policy
    return match.group(1)


class TestDemoPages:
    async def test_the_code_flow_comes_back_to_a_page_that_finishes_it(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await identity_platform.seed_demo()
        start = await identity.get("/demo/login")
        assert start.status_code == 200, start.text
        assert start.headers["content-type"].startswith("text/html")
        # The page's script: S256 challenge, state and verifier kept in sessionStorage.
        for piece in ('"S256"', "sessionStorage.setItem", "/oauth2/authorize", '"demo-web"'):
            assert piece in start.text
        assert "'unsafe-inline'" not in script_hashes(start)

        # What the browser does next, with the values the script would make.
        pkce = f.Pkce.make()
        params = f.authorize_params("demo-web", pkce, redirect_uri=CALLBACK, scope="openid")
        back = await f.login(identity, params, username="alice", password=DEMO_PASSWORD)
        assert back.status_code == 302, back.text
        location = urlsplit(back.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
        query = {key: values[0] for key, values in parse_qs(location.query).items()}

        page = await identity.get(back.headers["location"])
        assert page.status_code == 200, page.text  # it was a 404
        assert page.headers["content-type"].startswith("text/html")
        for piece in ("/oauth2/token", "code_verifier", '"authorization_code"', "saved.state"):
            assert piece in page.text
        assert "connect-src 'self'" in page.headers["content-security-policy"]

        # The page's fetch: the code and the verifier at the token endpoint.
        token = await f.exchange_code(
            identity, "demo-web", query["code"], pkce.verifier, redirect_uri=CALLBACK
        )
        assert token.status_code == 200, token.text
        assert token.json()["id_token"]

    async def test_the_demo_redirect_uri_follows_the_platform_origin(self) -> None:
        client = web_app("http://127.0.0.1:8765")
        assert client.redirect_uris[0] == "http://127.0.0.1:8765/demo/callback"

    async def test_a_later_run_on_another_loopback_port_still_comes_back(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await identity_platform.seed_demo()  # registered for port 8000
        other = "http://127.0.0.1:8765/demo/callback"
        params = f.authorize_params("demo-web", f.Pkce.make(), redirect_uri=other)
        back = await f.login(identity, params, username="alice", password=DEMO_PASSWORD)
        assert back.status_code == 302, back.text
        assert back.headers["location"].startswith(other + "?")

    @pytest.mark.parametrize("path", ["/demo/login", "/demo/callback"])
    async def test_absent_without_demo_data(self, identity: httpx.AsyncClient, path: str) -> None:
        response = await identity.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"

    @pytest.mark.parametrize("path", ["/demo/login", "/demo/callback"])
    async def test_absent_in_production(
        self, identity_platform: Platform, identity: httpx.AsyncClient, path: str
    ) -> None:
        await identity_platform.seed_demo()  # the demo client exists in this database...
        runtime = identity_platform.runtimes["identity"]
        runtime.settings = runtime.settings.model_copy(update={"env": "production"})
        response = await identity.get(path)
        assert response.status_code == 404  # ...but production never serves the pages

    async def test_not_in_the_api_document(self, identity: httpx.AsyncClient) -> None:
        document = (await identity.get("/openapi.json")).json()
        assert not [path for path in document["paths"] if path.startswith("/demo")]


class TestDemoAdminToken:
    async def test_the_readme_admin_token_reaches_the_admin_api_and_scim(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await identity_platform.seed_demo()
        token = await identity.post(
            "/oauth2/token",
            data={
                "grant_type": "password",
                "username": "admin",
                "password": DEMO_PASSWORD,
                "scope": "identity:admin",
            },
            auth=("demo-legacy", "demo-legacy-secret"),
        )
        assert token.status_code == 200, token.text
        admin = {"authorization": f"Bearer {token.json()['access_token']}"}
        clients = await identity.get("/v1/identity/clients?limit=10", headers=admin)
        assert clients.status_code == 200, clients.text
        scim = await identity.get('/scim2/Users?filter=userName eq "alice"', headers=admin)
        assert scim.status_code == 200, scim.text
