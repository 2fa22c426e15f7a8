"""Identity's tokens across the platform: the kernel verifier checks them against the
JWKS (fetched in process), and services call each other with client-credentials tokens."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from paymesh.identity.keys import KeyStore, SealedWithAnotherSecret
from paymesh.identity.security import Cipher
from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.identity import factories as f


@pytest.fixture
async def platform(make_platform: Callable[..., Any], settings: Settings) -> Platform:
    built: Platform = await make_platform(
        ["identity", "ledger"],
        settings_override=settings.model_copy(update={"public_url": f.ISSUER}),
    )
    return built


async def service_token(client: httpx.AsyncClient, client_id: str, secret: str) -> str:
    response = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def reporting_token(platform: Platform, client: httpx.AsyncClient, **fields: Any) -> str:
    app = await f.create_client(
        platform,
        public=False,
        first_party=False,
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=["ledger:read"],
        roles=["auditor"],
        **fields,
    )
    assert app.client_secret is not None
    return await service_token(client, app.client_id, app.client_secret)


def tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = base64.urlsafe_b64decode(payload + "==").replace(b'"auditor"', b'"admin"')
    forged = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


class TestIdentityTokensAtTheLedger:
    async def test_client_credentials_token_is_accepted(self, platform: Platform) -> None:
        async with http_client(platform) as client:
            token = await reporting_token(platform, client)
            response = await client.get(
                "/v1/ledger/accounts", headers={"authorization": f"Bearer {token}"}
            )
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize("forge", ["tampered", "unknown_key", "expired", "not_at_jwt"])
    async def test_forged_tokens_are_refused(self, platform: Platform, forge: str) -> None:
        async with http_client(platform) as client:
            token = await reporting_token(platform, client)
            if forge == "tampered":
                token = tamper(token)
            else:
                key = RSAKey.generate_key(2048, parameters={"alg": "RS256"})
                key.ensure_kid()
                now = int(time.time())
                claims = {
                    "iss": f.ISSUER,
                    "sub": "x",
                    "aud": "paymesh",
                    "iat": now,
                    "exp": now + 300,
                    "roles": ["admin"],
                    "client_id": "x",
                    "jti": "j",
                }
                header = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}
                if forge != "unknown_key":
                    signing = platform.runtimes["identity"].state["provider"].keys.signing_key()
                    key, header["kid"] = signing.private, signing.kid
                if forge == "expired":
                    claims |= {"iat": now - 4000, "exp": now - 3600}
                if forge == "not_at_jwt":
                    header["typ"] = "JWT"
                token = jwt.encode(header, claims, key)
            response = await client.get(
                "/v1/ledger/accounts", headers={"authorization": f"Bearer {token}"}
            )
        assert response.status_code == 401, (forge, response.text)

    async def test_wrong_audience_is_refused(self, platform: Platform) -> None:
        async with http_client(platform) as client:
            token = await reporting_token(platform, client, audience=["another-api"])
            response = await client.get(
                "/v1/ledger/accounts", headers={"authorization": f"Bearer {token}"}
            )
        assert response.status_code == 401

    async def test_keys_sealed_with_another_secret_fail_the_start_clearly(
        self, platform: Platform
    ) -> None:
        # An operator who changes PAYMESH_SIGNING_SECRET gets a message saying so, not a
        # bare cryptography InvalidTag from deep inside the start.
        keys = platform.runtimes["identity"].state["provider"].keys
        other = KeyStore(keys.database, Cipher("another-signing-secret"), keys.settings)
        with pytest.raises(SealedWithAnotherSecret, match="PAYMESH_SIGNING_SECRET"):
            await other.ensure()
        await keys.reload()  # the right secret still opens them
        assert keys.signing_key().kid

    async def test_rotated_key_is_fetched_on_first_sight(self, platform: Platform) -> None:
        keys = platform.runtimes["identity"].state["provider"].keys
        old = keys.signing_key().kid
        new = await keys.rotate()
        assert new != old
        async with http_client(platform) as client:
            jwks = (await client.get("/oauth2/jwks")).json()
            assert {key["kid"] for key in jwks["keys"]} == {old, new}
            token = await reporting_token(platform, client)
            response = await client.get(
                "/v1/ledger/accounts", headers={"authorization": f"Bearer {token}"}
            )
        assert response.status_code == 200, response.text


class TestServiceToServiceCalls:
    async def test_directory_uses_client_credentials_from_identity(
        self, platform: Platform
    ) -> None:
        client = platform.directory.client("ledger", caller="payments")
        try:
            response = await client.request("GET", "/v1/ledger/accounts")
        finally:
            await client.aclose()
        assert response.status_code == 200
        token = await platform._service_token("payments", "ledger")
        assert jwt.decode(token, platform.runtimes["identity"].state["provider"].keys.key_set())
        header = token.split(".")[0]
        assert b"HS256" not in base64.urlsafe_b64decode(header + "==")

    async def test_development_tokens_refused_in_production(
        self, make_platform: Callable[..., Any], settings: Settings
    ) -> None:
        production = settings.model_copy(update={"env": "production", "public_url": f.ISSUER})
        platform: Platform = await make_platform(
            ["identity", "ledger"], settings_override=production
        )
        token = platform.tokens.issue("x", roles=["admin"])
        async with http_client(platform) as client:
            response = await client.get(
                "/v1/ledger/accounts", headers={"authorization": f"Bearer {token}"}
            )
        assert response.status_code == 401
