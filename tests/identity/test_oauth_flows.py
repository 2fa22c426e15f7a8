"""The provider's refusals and its less common paths, over HTTP (ASGI)."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY

from paymesh.platform import Platform
from tests.identity import factories as f


async def refresh(client: httpx.AsyncClient, client_id: str, token: str) -> httpx.Response:
    return await client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id},
    )


class TestAuthorize:
    async def test_plain_pkce_is_refused(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        app = await f.create_client(identity_platform)
        pkce = f.Pkce.make()
        params = f.authorize_params(
            app.client_id, None, code_challenge=pkce.verifier, code_challenge_method="plain"
        )
        query = f.redirect_query(await identity.get("/oauth2/authorize", params=params))
        assert query["error"] == "invalid_request"
        assert query["state"] == params["state"]

    async def test_missing_pkce_is_refused(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        app = await f.create_client(identity_platform, public=False)
        params = f.authorize_params(app.client_id, None)
        query = f.redirect_query(await identity.get("/oauth2/authorize", params=params))
        assert query["error"] == "invalid_request"

    async def test_unregistered_redirect_uri_gets_an_error_page(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        app = await f.create_client(identity_platform)
        params = f.authorize_params(
            app.client_id, f.Pkce.make(), redirect_uri="http://127.0.0.1:9000/callback/evil"
        )
        response = await identity.get("/oauth2/authorize", params=params)
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "not valid" in response.text

    async def test_unknown_client_gets_an_error_page(self, identity: httpx.AsyncClient) -> None:
        params = f.authorize_params("nobody", f.Pkce.make())
        response = await identity.get("/oauth2/authorize", params=params)
        assert response.status_code == 400
        assert "location" not in response.headers

    async def test_login_without_csrf_token_is_refused(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await f.create_user(identity_platform)
        app = await f.create_client(identity_platform)
        page = await identity.get(
            "/oauth2/authorize", params=f.authorize_params(app.client_id, f.Pkce.make())
        )
        fields = f.hidden_fields(page.text) | {"csrf_token": "forged", "username": "alice"}
        response = await identity.post("/oauth2/authorize", data=fields | {"password": f.PASSWORD})
        assert response.status_code == 403

    async def test_third_party_client_asks_for_consent(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await f.create_user(identity_platform)
        app = await f.create_client(identity_platform, first_party=False)
        params = f.authorize_params(app.client_id, f.Pkce.make())
        consent = await f.login(identity, params)
        assert consent.status_code == 200
        assert "Allow access?" in consent.text
        fields = f.hidden_fields(consent.text)
        fields["authorization_request"] = fields["authorization_request"].replace("&amp;", "&")
        denied = await identity.post("/oauth2/authorize", data=fields | {"action": "deny"})
        assert f.redirect_query(denied)["error"] == "access_denied"
        allowed = await identity.post("/oauth2/authorize", data=fields | {"action": "approve"})
        assert "code" in f.redirect_query(allowed)

    async def test_repeated_failures_lock_the_account(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await f.create_user(identity_platform)
        app = await f.create_client(identity_platform)
        params = f.authorize_params(app.client_id, f.Pkce.make())
        failures_before = REGISTRY.get_sample_value("paymesh_identity_login_failures_total") or 0
        lockouts_before = (
            REGISTRY.get_sample_value("paymesh_identity_lockouts_total", {"kind": "username"}) or 0
        )
        statuses = [
            (await f.login(identity, params, password="wrong password")).status_code
            for _ in range(5)
        ]
        assert statuses == [401] * 5
        locked = await f.login(identity, params)  # even the right password now
        assert locked.status_code == 429
        # The security dashboard's counters saw it.
        failures = REGISTRY.get_sample_value("paymesh_identity_login_failures_total") or 0
        assert failures - failures_before == 5
        lockouts = REGISTRY.get_sample_value(
            "paymesh_identity_lockouts_total", {"kind": "username"}
        )
        assert (lockouts or 0) - lockouts_before == 1


class TestAuthorizationCodeExchange:
    async def test_wrong_verifier_missing_verifier_and_reuse(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await f.create_user(identity_platform)
        app = await f.create_client(identity_platform)
        pkce = f.Pkce.make()
        code = await f.authorization_code(identity, app.client_id, pkce)
        wrong = await f.exchange_code(identity, app.client_id, code, f.Pkce.make().verifier)
        assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
        missing = await f.exchange_code(identity, app.client_id, code, None)
        assert missing.json()["error"] == "invalid_request"
        first = await f.exchange_code(identity, app.client_id, code, pkce.verifier)
        assert first.status_code == 200, first.text
        again = await f.exchange_code(identity, app.client_id, code, pkce.verifier)
        assert again.json()["error"] == "invalid_grant"
        # RFC 6749 4.1.2: the tokens the reused code granted are revoked.
        revoked = await refresh(identity, app.client_id, first.json()["refresh_token"])
        assert revoked.json()["error"] == "invalid_grant"

    async def test_wrong_redirect_uri_at_the_token_endpoint(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await f.create_user(identity_platform)
        app = await f.create_client(
            identity_platform, redirect_uris=[f.REDIRECT_URI, "http://127.0.0.1:9000/other"]
        )
        pkce = f.Pkce.make()
        code = await f.authorization_code(identity, app.client_id, pkce)
        response = await f.exchange_code(
            identity, app.client_id, code, pkce.verifier, redirect_uri="http://127.0.0.1:9000/other"
        )
        assert response.json()["error"] == "invalid_grant"


class TestRefreshTokens:
    async def test_reuse_revokes_the_family(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await f.create_user(identity_platform)
        app = await f.create_client(identity_platform)
        pkce = f.Pkce.make()
        code = await f.authorization_code(identity, app.client_id, pkce)
        first = (await f.exchange_code(identity, app.client_id, code, pkce.verifier)).json()
        second = await refresh(identity, app.client_id, first["refresh_token"])
        assert second.status_code == 200
        rotated = second.json()["refresh_token"]
        assert rotated != first["refresh_token"]
        reused = await refresh(identity, app.client_id, first["refresh_token"])
        assert reused.json()["error"] == "invalid_grant"
        after = await refresh(identity, app.client_id, rotated)
        assert after.json()["error"] == "invalid_grant"


class TestPasswordGrant:
    async def test_only_for_flagged_clients(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await f.create_user(identity_platform)
        legacy = await f.create_client(
            identity_platform,
            public=False,
            redirect_uris=[],
            password_grant_allowed=True,
            grant_types=["password", "refresh_token"],
        )
        modern = await f.create_client(
            identity_platform, public=False, grant_types=["authorization_code"]
        )
        form = {
            "grant_type": "password",
            "username": "alice",
            "password": f.PASSWORD,
            "scope": "openid profile",
        }
        assert legacy.client_secret and modern.client_secret
        ok = await identity.post(
            "/oauth2/token", data=form, auth=(legacy.client_id, legacy.client_secret)
        )
        assert ok.status_code == 200, ok.text
        assert {"access_token", "refresh_token", "id_token"} <= set(ok.json())
        refused = await identity.post(
            "/oauth2/token", data=form, auth=(modern.client_id, modern.client_secret)
        )
        assert refused.json()["error"] == "unauthorized_client"
        wrong = await identity.post(
            "/oauth2/token",
            data=form | {"password": "nope-nope"},
            auth=(legacy.client_id, legacy.client_secret),
        )
        assert wrong.json()["error"] == "invalid_grant"


class TestIntrospectionAndRevocation:
    async def test_revoked_access_token_is_inactive(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        app = await f.create_client(
            identity_platform,
            public=False,
            redirect_uris=[],
            grant_types=["client_credentials"],
            scopes=["ledger:read"],
        )
        assert app.client_secret
        auth = (app.client_id, app.client_secret)
        token = (
            await identity.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "ledger:read"},
                auth=auth,
            )
        ).json()["access_token"]
        active = (
            await identity.post("/oauth2/introspect", data={"token": token}, auth=auth)
        ).json()
        assert active["active"] is True
        assert active["client_id"] == app.client_id and active["scope"] == "ledger:read"
        assert (
            await identity.post("/oauth2/revoke", data={"token": token}, auth=auth)
        ).status_code == 200
        inactive = (
            await identity.post("/oauth2/introspect", data={"token": token}, auth=auth)
        ).json()
        assert inactive == {"active": False}
        bad_scope = await identity.post(
            "/oauth2/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=auth
        )
        assert bad_scope.json()["error"] == "invalid_scope"
