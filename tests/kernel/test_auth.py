"""Bearer access tokens: verified signature, issuer, audience, expiry and type; roles."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import OctKey

from paymesh.kernel.auth import DevelopmentTokens
from paymesh.kernel.config import DEVELOPMENT_SIGNING_SECRET
from paymesh.platform import Platform
from tests.kernel.support import bearer

WHOAMI = "/v1/sample/admin/whoami"


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")


class TestAuthenticate:
    async def test_a_valid_admin_token_is_let_in(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.get(WHOAMI, headers=bearer(admin_token))

        assert response.status_code == 200
        assert response.json() == {"subject": "usr_admin", "roles": ["admin"]}

    async def test_no_token_is_401_with_www_authenticate(self, client: httpx.AsyncClient) -> None:
        assert_unauthenticated(await client.get(WHOAMI))

    async def test_a_non_bearer_scheme_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get(WHOAMI, headers={"authorization": "Basic dXNlcjpwYXNz"})

        assert_unauthenticated(response)

    async def test_an_expired_token_is_401(
        self, sample: Platform, client: httpx.AsyncClient
    ) -> None:
        expired = sample.tokens.issue("usr_admin", roles=["admin"], ttl_seconds=-60)

        assert_unauthenticated(await client.get(WHOAMI, headers=bearer(expired)))

    async def test_a_token_for_another_audience_is_401(
        self, sample: Platform, client: httpx.AsyncClient
    ) -> None:
        other = DevelopmentTokens(
            sample.settings.signing_secret.get_secret_value(), "paymesh", "another-api"
        )
        token = other.issue("usr_admin", roles=["admin"])

        assert_unauthenticated(await client.get(WHOAMI, headers=bearer(token)))

    async def test_a_token_from_another_issuer_is_401(
        self, sample: Platform, client: httpx.AsyncClient
    ) -> None:
        other = DevelopmentTokens(
            sample.settings.signing_secret.get_secret_value(), "someone-else", "paymesh"
        )
        token = other.issue("usr_admin", roles=["admin"])

        assert_unauthenticated(await client.get(WHOAMI, headers=bearer(token)))

    async def test_a_tampered_signature_is_401(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        header, claims, signature = admin_token.split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

        response = await client.get(WHOAMI, headers=bearer(f"{header}.{claims}.{flipped}"))

        assert_unauthenticated(response)

    async def test_tampered_claims_are_401(
        self, sample: Platform, client: httpx.AsyncClient, customer_token: str
    ) -> None:
        # Claims of an admin token under a customer token's signature.
        admin = sample.tokens.issue("usr_customer", roles=["admin"])
        header, _, signature = customer_token.split(".")
        forged = f"{header}.{admin.split('.')[1]}.{signature}"

        assert_unauthenticated(await client.get(WHOAMI, headers=bearer(forged)))

    async def test_a_token_signed_with_another_secret_is_401(
        self, client: httpx.AsyncClient
    ) -> None:
        stranger = DevelopmentTokens("x" * 48, "paymesh", "paymesh")
        token = stranger.issue("usr_admin", roles=["admin"])

        assert_unauthenticated(await client.get(WHOAMI, headers=bearer(token)))

    async def test_an_unsigned_token_is_401(self, client: httpx.AsyncClient) -> None:
        header = _segment({"alg": "none", "typ": "at+jwt"})
        claims = _segment(
            {"iss": "paymesh", "aud": "paymesh", "sub": "usr_admin", "exp": 4_000_000_000}
        )
        token = f"{header}.{claims}."

        assert_unauthenticated(await client.get(WHOAMI, headers=bearer(token)))

    async def test_a_token_that_is_not_an_access_token_is_401(
        self, client: httpx.AsyncClient
    ) -> None:
        key = OctKey.import_key(DEVELOPMENT_SIGNING_SECRET.encode())
        id_token = jwt.encode(
            {"alg": "HS256", "typ": "JWT"},
            {
                "iss": "paymesh",
                "aud": "paymesh",
                "sub": "usr_admin",
                "exp": 4_000_000_000,
                "roles": ["admin"],
            },
            key,
        )

        assert_unauthenticated(await client.get(WHOAMI, headers=bearer(id_token)))

    async def test_garbage_is_401(self, client: httpx.AsyncClient) -> None:
        assert_unauthenticated(await client.get(WHOAMI, headers=bearer("not-a-jwt")))


class TestRequireRoles:
    async def test_the_wrong_role_is_403(
        self, client: httpx.AsyncClient, customer_token: str
    ) -> None:
        response = await client.get(WHOAMI, headers=bearer(customer_token))

        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "forbidden"
        assert "admin" in response.json()["detail"]

    async def test_no_roles_at_all_is_403(
        self, sample: Platform, client: httpx.AsyncClient
    ) -> None:
        token = sample.tokens.issue("usr_nobody")

        response = await client.get(WHOAMI, headers=bearer(token))

        assert response.status_code == 403

    async def test_one_matching_role_among_several_is_enough(
        self, sample: Platform, client: httpx.AsyncClient
    ) -> None:
        token = sample.tokens.issue("usr_ops", roles=["ops", "admin"])

        response = await client.get(WHOAMI, headers=bearer(token))

        assert response.status_code == 200
        assert response.json()["roles"] == ["admin", "ops"]
