"""TOTP second factor: enrol, confirm (recovery codes), disable, and login with a code."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pyotp
from sqlalchemy import select

from paymesh.identity.models import RecoveryCode
from paymesh.platform import Platform
from tests.identity import accounts as a
from tests.identity import factories as f

TOTP = "/v1/identity/users/me/totp"


def previous_code(secret: str) -> str:
    """A code of the previous time step: still accepted, but not the current one."""
    return pyotp.TOTP(secret).at(time.time() - 30)


async def enrolled(
    platform: Platform, client: httpx.AsyncClient, username: str = "carol"
) -> tuple[dict[str, str], str, list[str]]:
    """A user with TOTP enabled: their headers, the secret, and the recovery codes."""
    _, headers = await a.signed_in(platform, client, username)
    secret = (await client.post(TOTP, headers=headers)).json()["secret"]
    response = await client.post(
        f"{TOTP}/confirm", json={"code": previous_code(secret)}, headers=headers
    )
    assert response.status_code == 200, response.text
    return headers, secret, response.json()["recovery_codes"]


async def login(platform: Platform, client: httpx.AsyncClient, totp: str) -> httpx.Response:
    client.cookies.clear()  # a fresh browser: no single sign-on session
    app = await f.create_client(platform)
    params = f.authorize_params(app.client_id, f.Pkce.make())
    return await f.login(client, params, "carol", a.STRONG_PASSWORD, totp=totp)


class TestEnrolTotp:
    async def test_returns_the_secret_and_an_otpauth_uri(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        response = await identity.post(TOTP, headers=headers)
        assert response.status_code == 201
        body: dict[str, Any] = response.json()
        assert body["otpauth_uri"].startswith("otpauth://totp/Paymesh:carol?")
        assert pyotp.parse_uri(body["otpauth_uri"]).secret == body["secret"]
        assert response.headers["cache-control"] == "no-store"

    async def test_unconfirmed_enrolment_does_not_change_login(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        await identity.post(TOTP, headers=headers)
        assert "code" in f.redirect_query(await login(identity_platform, identity, ""))

    async def test_when_enabled_is_a_conflict(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        headers, _, _ = await enrolled(identity_platform, identity)
        response = await identity.post(TOTP, headers=headers)
        assert response.status_code == 409
        assert response.json()["code"] == "totp_already_enabled"


class TestConfirmTotp:
    async def test_returns_ten_recovery_codes_stored_hashed(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, _, codes = await enrolled(identity_platform, identity)
        assert len(set(codes)) == 10
        runtime = identity_platform.runtimes["identity"]
        async with runtime.database.transaction() as session:
            stored = set(await session.scalars(select(RecoveryCode.code_hash)))
        assert len(stored) == 10
        assert not stored & set(codes)

    async def test_wrong_code_is_refused(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        secret = (await identity.post(TOTP, headers=headers)).json()["secret"]
        wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
        response = await identity.post(f"{TOTP}/confirm", json={"code": wrong}, headers=headers)
        assert response.status_code == 403
        assert response.json()["code"] == "invalid_totp_code"

    async def test_without_enrolment_is_a_conflict(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        response = await identity.post(f"{TOTP}/confirm", json={"code": "123456"}, headers=headers)
        assert response.status_code == 409
        assert response.json()["code"] == "totp_not_enrolled"


class TestLoginWithTotp:
    async def test_without_code_shows_the_form_again(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await enrolled(identity_platform, identity)
        response = await login(identity_platform, identity, "")
        assert response.status_code != 302

    async def test_current_code_logs_in(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, secret, _ = await enrolled(identity_platform, identity)
        response = await login(identity_platform, identity, pyotp.TOTP(secret).now())
        assert "code" in f.redirect_query(response)

    async def test_code_used_at_confirmation_is_not_accepted_again(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        secret = (await identity.post(TOTP, headers=headers)).json()["secret"]
        code = previous_code(secret)
        await identity.post(f"{TOTP}/confirm", json={"code": code}, headers=headers)
        response = await login(identity_platform, identity, code)
        assert response.status_code != 302

    async def test_recovery_code_works_once(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, _, codes = await enrolled(identity_platform, identity)
        first = await login(identity_platform, identity, codes[0].lower())
        assert "code" in f.redirect_query(first)
        again = await login(identity_platform, identity, codes[0])
        assert again.status_code != 302


class TestDisableTotp:
    async def test_with_current_code(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        headers, secret, _ = await enrolled(identity_platform, identity)
        code = pyotp.TOTP(secret).now()
        response = await identity.request("DELETE", TOTP, json={"code": code}, headers=headers)
        assert response.status_code == 204
        assert "code" in f.redirect_query(await login(identity_platform, identity, ""))

    async def test_with_recovery_code(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        headers, _, codes = await enrolled(identity_platform, identity)
        response = await identity.request("DELETE", TOTP, json={"code": codes[3]}, headers=headers)
        assert response.status_code == 204

    async def test_wrong_code_is_refused(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        headers, _, _ = await enrolled(identity_platform, identity)
        response = await identity.request(
            "DELETE", TOTP, json={"code": "WRONG-CODE1"}, headers=headers
        )
        assert response.status_code == 403
        assert response.json()["code"] == "invalid_totp_code"
        assert (await login(identity_platform, identity, "")).status_code != 302

    async def test_when_not_enabled_is_a_conflict(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        response = await identity.request("DELETE", TOTP, json={"code": "123456"}, headers=headers)
        assert response.status_code == 409
        assert response.json()["code"] == "totp_not_enabled"


class TestPasswordGrantWithTotp:
    async def password_grant(
        self, platform: Platform, client: httpx.AsyncClient, totp: str | None
    ) -> httpx.Response:
        app = await f.create_client(
            platform,
            public=False,
            grant_types=["password"],
            password_grant_allowed=True,
            redirect_uris=[],
            scopes=["openid"],
        )
        assert app.client_secret is not None
        form = {"grant_type": "password", "username": "carol", "password": a.STRONG_PASSWORD}
        if totp is not None:
            form["totp"] = totp
        return await client.post(
            "/oauth2/token", data=form, auth=(app.client_id, app.client_secret)
        )

    async def test_without_code_is_refused(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await enrolled(identity_platform, identity)
        response = await self.password_grant(identity_platform, identity, None)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    async def test_with_current_code_gets_tokens(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, secret, _ = await enrolled(identity_platform, identity)
        response = await self.password_grant(identity_platform, identity, pyotp.TOTP(secret).now())
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]
