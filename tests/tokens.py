"""Identity's own tokens for the end-to-end worlds (risk, notifications, payments): a
customer's or staff user's through the password grant of the demo's legacy client, and a
`service` client's through client credentials."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable

import httpx

from paymesh.platform import Platform
from tests.identity import factories as identity_factories

LEGACY = ("demo-legacy", "demo-legacy-secret")


def jwt_claims(token: str) -> dict[str, object]:
    """A JWT's claims, unverified (for tests that need to know what a token says)."""
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return claims


async def password_token(http: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    """The Authorization header of `username` signed in (the seeded legacy client)."""
    token = await http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": username, "password": password},
        auth=LEGACY,
    )
    assert token.status_code == 200, token.text
    return {"authorization": f"Bearer {token.json()['access_token']}"}


async def service_token(platform: Platform, http: httpx.AsyncClient) -> dict[str, str]:
    """The Authorization header of a new confidential client with role `service`."""
    created = await identity_factories.create_client(
        platform,
        name="A service (test)",
        public=False,
        first_party=True,
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=[],
        roles=["service"],
    )
    assert created.client_secret is not None
    token = await http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(created.client_id, created.client_secret),
    )
    assert token.status_code == 200, token.text
    return {"authorization": f"Bearer {token.json()['access_token']}"}


async def staff_tokens(
    platform: Platform,
    http: httpx.AsyncClient,
    roles: Iterable[str],
    unique: Callable[[str], str],
) -> dict[str, dict[str, str]]:
    """A new user per role, signed in: role -> Authorization header."""
    tokens: dict[str, dict[str, str]] = {}
    for role in roles:
        username = unique(role)
        await identity_factories.create_user(platform, username, roles=[role])
        tokens[role] = await password_token(http, username, identity_factories.PASSWORD)
    return tokens
