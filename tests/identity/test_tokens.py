"""The `tier` claim: every access token identity issues names its client's rate-limit tier
as it was when the token was signed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from joserfc import jwt

from paymesh.kernel.oidc import service_client_id, service_client_secret
from paymesh.platform import Platform
from tests.identity import accounts as a
from tests.identity import factories as f

CLIENTS = "/v1/identity/clients"


@pytest.fixture
def admin(identity_platform: Platform) -> dict[str, str]:
    return a.bearer(identity_platform, "usr_admin", ("admin",))


def claims(platform: Platform, token: str) -> dict[str, Any]:
    """The claims of `token`, once its signature checks out against identity's keys."""
    keys = platform.runtimes["identity"].state["provider"].keys.key_set()
    decoded: dict[str, Any] = jwt.decode(token, keys).claims
    return decoded


async def client_credentials(client: httpx.AsyncClient, client_id: str, secret: str) -> str:
    response = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def set_tier(
    client: httpx.AsyncClient, headers: dict[str, str], client_id: str, tier: str
) -> None:
    response = await client.put(
        f"{CLIENTS}/{client_id}/rate-limit-tier", json={"rate_limit_tier": tier}, headers=headers
    )
    assert response.status_code == 200, response.text


class TestClientCredentialsToken:
    async def test_tier_claim_follows_an_update_from_the_next_token_on(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        app = await f.create_client(
            identity_platform,
            public=False,
            grant_types=["client_credentials"],
            redirect_uris=[],
            scopes=[],
            roles=["merchant"],
        )
        assert app.client_secret is not None
        before = await client_credentials(identity, app.client_id, app.client_secret)
        await set_tier(identity, admin, app.client_id, "gold")
        after = await client_credentials(identity, app.client_id, app.client_secret)
        assert claims(identity_platform, before)["tier"] == "bronze"
        assert claims(identity_platform, after)["tier"] == "gold"

    async def test_platform_service_account_is_unlimited(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        client_id = service_client_id("ledger")
        secret = service_client_secret(identity_platform.settings, "ledger")
        token = await client_credentials(identity, client_id, secret)
        assert claims(identity_platform, token)["tier"] == "unlimited"

    async def test_introspection_reports_the_tier(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        app = await f.create_client(
            identity_platform,
            public=False,
            grant_types=["client_credentials"],
            redirect_uris=[],
            scopes=[],
            rate_limit_tier="silver",
        )
        assert app.client_secret is not None
        token = await client_credentials(identity, app.client_id, app.client_secret)
        response = await identity.post(
            "/oauth2/introspect",
            data={"token": token},
            auth=(app.client_id, app.client_secret),
        )
        assert response.json()["active"] is True
        assert response.json()["tier"] == "silver"


class TestUserTokens:
    async def test_code_and_refresh_tokens_carry_the_tier_at_issue(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await f.create_user(identity_platform)
        app = await f.create_client(identity_platform, rate_limit_tier="silver")
        pkce = f.Pkce.make()
        code = await f.authorization_code(identity, app.client_id, pkce)
        issued = (await f.exchange_code(identity, app.client_id, code, pkce.verifier)).json()
        await set_tier(identity, admin, app.client_id, "unlimited")
        refreshed = await identity.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": issued["refresh_token"],
                "client_id": app.client_id,
            },
        )
        assert refreshed.status_code == 200, refreshed.text
        assert claims(identity_platform, issued["access_token"])["tier"] == "silver"
        assert claims(identity_platform, refreshed.json()["access_token"])["tier"] == "unlimited"
