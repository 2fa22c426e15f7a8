"""Tokens are re-checked after issue: revoked, of a disabled, deleted or demoted user, of a
disabled or deleted client, of an ended refresh family, session or password — refused
everywhere (identity's own APIs and the ledger), at once in one process, within seconds
in another; and a delegated token acts only within its user's roles."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from paymesh.kernel.auth import Caller
from paymesh.kernel.revocation import RedisRevocationFeed, RevocationRegistry
from paymesh.platform import Platform
from tests.conftest import IN_CI, http_client
from tests.identity import factories as f
from tests.identity.factories import ISSUER

REDIS_URL = os.environ.get("PAYMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TRANSFER_PATH = "/v1/ledger/transfers"


@pytest.fixture
async def platform(make_platform: Callable[..., Any], settings: Any) -> Platform:
    """Identity and the ledger in one process, with a password-grant client allowed the
    ledger scopes and an admin and a finance user."""
    platform: Platform = await make_platform(
        ["identity", "ledger"],
        settings_override=settings.model_copy(update={"public_url": ISSUER}),
    )
    await f.create_user(platform, "root", roles=["admin"])
    await f.create_user(platform, "other_admin", roles=["admin"])
    await f.create_user(platform, "fiona", roles=["finance"])
    await f.create_user(platform, "carol", roles=["customer"])
    return platform


@pytest.fixture
async def client(platform: Platform) -> Any:
    async with http_client(platform) as http:
        http.base_url = httpx.URL(ISSUER)
        yield http


async def legacy_app(platform: Platform, **fields: Any) -> tuple[str, str]:
    created = await f.create_client(
        platform,
        public=False,
        grant_types=["password", "refresh_token", "client_credentials"],
        password_grant_allowed=True,
        scopes=["openid", "profile", "ledger", "ledger:write", "identity:admin", "offline_access"],
        **fields,
    )
    assert created.client_secret is not None
    return created.client_id, created.client_secret


async def password_token(
    http: httpx.AsyncClient,
    app: tuple[str, str],
    username: str,
    scope: str = "openid ledger identity:admin offline_access",
) -> dict[str, Any]:
    response = await http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": username, "password": f.PASSWORD}
        | {"scope": scope},
        auth=app,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: dict[str, Any] | str) -> dict[str, str]:
    value = token if isinstance(token, str) else token["access_token"]
    return {"authorization": f"Bearer {value}"}


async def user_id(platform: Platform, username: str) -> str:
    from paymesh.identity import repository

    async with platform.runtimes["identity"].database.transaction() as session:
        row = await repository.get_user_by_username(session, username)
        assert row is not None
        return row.id


async def create_account(http: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await http.post(
        "/v1/ledger/accounts",
        json={"id": f"acc_{uuid.uuid4().hex[:12]}", "currency": "USD"},
        headers=headers,
    )


def assert_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == "the token was revoked"


class TestRevokedAccessToken:
    async def test_revoked_token_is_refused_by_the_ledger_and_identity(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        token = await password_token(client, app, "root")
        assert (await create_account(client, bearer(token))).status_code == 201

        response = await client.post(
            "/oauth2/revoke", data={"token": token["access_token"]}, auth=app
        )
        assert response.status_code == 200

        assert_revoked(await create_account(client, bearer(token)))
        assert_revoked(await client.get("/v1/identity/users/me", headers=bearer(token)))
        assert_revoked(await client.get("/v1/identity/users", headers=bearer(token)))
        # Another token of the same user is untouched.
        fresh = await password_token(client, app, "root")
        assert (await create_account(client, bearer(fresh))).status_code == 201

    async def test_revoking_the_refresh_token_ends_its_access_tokens(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        token = await password_token(client, app, "fiona")
        response = await client.post(
            "/oauth2/revoke",
            data={"token": token["refresh_token"], "token_type_hint": "refresh_token"},
            auth=app,
        )
        assert response.status_code == 200
        assert_revoked(await create_account(client, bearer(token)))

    async def test_refresh_token_reuse_ends_every_access_token_of_the_family(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        first = await password_token(client, app, "fiona")
        refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        second = await client.post("/oauth2/token", data=refresh, auth=app)
        assert second.status_code == 200
        assert (await create_account(client, bearer(second.json()))).status_code == 201

        replay = await client.post("/oauth2/token", data=refresh, auth=app)
        assert replay.status_code == 400

        assert_revoked(await create_account(client, bearer(first)))
        assert_revoked(await create_account(client, bearer(second.json())))


class TestUserChanges:
    async def test_disabled_user_cannot_move_money_and_stays_out_after_enable(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        fiona = await password_token(client, app, "fiona")
        admin = await password_token(client, app, "root")
        fiona_id = await user_id(platform, "fiona")

        response = await client.post(
            f"/v1/identity/users/{fiona_id}/disable", headers=bearer(admin)
        )
        assert response.status_code == 200, response.text
        assert_revoked(await create_account(client, bearer(fiona)))

        response = await client.post(f"/v1/identity/users/{fiona_id}/enable", headers=bearer(admin))
        assert response.status_code == 200
        assert_revoked(await create_account(client, bearer(fiona)))
        # A login after the enable works at once (same second as the stamp included).
        again = await password_token(client, app, "fiona")
        assert (await create_account(client, bearer(again))).status_code == 201

    async def test_demoted_admin_cannot_regrant_themselves(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        root = await password_token(client, app, "root")
        other = await password_token(client, app, "other_admin")
        other_id = await user_id(platform, "other_admin")
        root_id = await user_id(platform, "root")

        response = await client.put(
            f"/v1/identity/users/{other_id}/roles",
            json={"roles": ["customer"]},
            headers=bearer(root),
        )
        assert response.status_code == 200, response.text

        regrant = await client.put(
            f"/v1/identity/users/{other_id}/roles",
            json={"roles": ["admin", "finance"]},
            headers=bearer(other),
        )
        assert_revoked(regrant)
        lockout = await client.post(f"/v1/identity/users/{root_id}/disable", headers=bearer(other))
        assert_revoked(lockout)
        # Logging in again gives a customer's token: no admin, no ledger scope.
        demoted = await password_token(client, app, "other_admin")
        assert demoted["scope"].split() == ["openid", "offline_access"]
        forbidden = await client.get("/v1/identity/users", headers=bearer(demoted))
        assert forbidden.status_code == 403

    async def test_password_change_ends_older_tokens(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        token = await password_token(client, app, "carol")
        response = await client.post(
            "/v1/identity/users/me/password",
            json={"current_password": f.PASSWORD, "new_password": "a-new-long-passphrase-77"},
            headers=bearer(token),
        )
        assert response.status_code in (200, 204), response.text
        assert_revoked(await client.get("/v1/identity/users/me", headers=bearer(token)))


class TestClientChanges:
    async def test_disabled_and_deleted_clients_tokens_are_refused(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        admin_app = await legacy_app(platform)
        admin = await password_token(client, admin_app, "root")
        service = await f.create_client(
            platform,
            public=False,
            grant_types=["client_credentials"],
            roles=["service"],
            scopes=["ledger"],
            redirect_uris=[],
        )
        assert service.client_secret is not None
        credentials = (service.client_id, service.client_secret)

        async def service_token() -> str:
            response = await client.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "ledger"},
                auth=credentials,
            )
            assert response.status_code == 200, response.text
            return str(response.json()["access_token"])

        first = await service_token()
        assert (await create_account(client, bearer(first))).status_code == 201
        path = f"/v1/identity/clients/{service.client_id}"
        assert (await client.post(f"{path}/disable", headers=bearer(admin))).status_code == 200
        assert_revoked(await create_account(client, bearer(first)))

        assert (await client.post(f"{path}/enable", headers=bearer(admin))).status_code == 200
        second = await service_token()
        assert (await create_account(client, bearer(second))).status_code == 201
        assert (await client.delete(path, headers=bearer(admin))).status_code == 204
        assert_revoked(await create_account(client, bearer(second)))


class TestDelegatedScopes:
    async def test_customer_never_gets_ledger_scope_whatever_the_client(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        carol = await password_token(client, app, "carol", scope="openid ledger ledger:write")
        assert carol["scope"] == "openid"
        response = await client.post(
            TRANSFER_PATH,
            json={
                "id": "txf_steal",
                "debit_account_id": "treasury",
                "credit_account_id": "carol",
                "amount": 100000,
                "currency": "USD",
            },
            headers=bearer(carol),
        )
        assert response.status_code == 403, response.text

    async def test_finance_user_gets_the_ledger_scope_they_asked_for(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        fiona = await password_token(client, app, "fiona", scope="openid ledger")
        assert fiona["scope"] == "openid ledger"
        assert (await create_account(client, bearer(fiona))).status_code == 201
        # The same user through a client that did not ask for the ledger scope: no ledger.
        narrow = await password_token(client, app, "fiona", scope="openid")
        assert (await create_account(client, bearer(narrow))).status_code == 403


class TestAfterRestart:
    async def test_revocations_survive_a_restart(
        self, platform: Platform, client: httpx.AsyncClient, settings: Any
    ) -> None:
        app = await legacy_app(platform)
        token = await password_token(client, app, "root")
        await client.post("/oauth2/revoke", data={"token": token["access_token"]}, auth=app)

        restarted = Platform(
            settings.model_copy(update={"public_url": ISSUER}),
            ["identity", "ledger"],
            run_workers=False,
        )
        await restarted.start()
        try:
            async with http_client(restarted) as http:
                http.base_url = httpx.URL(ISSUER)
                assert_revoked(await create_account(http, bearer(token)))
        finally:
            await restarted.stop()


@pytest.fixture
async def redis_url() -> str:
    probe = RedisRevocationFeed(REDIS_URL, key="paymesh:test:probe")
    try:
        await probe._redis.ping()
    except Exception as error:
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is required in CI: {error!r}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    finally:
        await probe.close()
    return REDIS_URL


class TestAcrossProcesses:
    async def test_a_revocation_reaches_another_process_within_five_seconds(
        self, make_platform: Callable[..., Any], settings: Any, redis_url: str
    ) -> None:
        key = f"paymesh:test:revocations:{uuid.uuid4().hex}"
        shared = settings.model_copy(update={"public_url": ISSUER, "redis_url": redis_url})
        platform: Platform = await make_platform(["identity"], settings_override=shared)
        # The platform's feed writes to the default key; point it at this test's own.
        assert isinstance(platform.revocations.feed, RedisRevocationFeed)
        platform.revocations.feed.key = key
        elsewhere = RevocationRegistry(
            RedisRevocationFeed(redis_url, key=key), sync_interval_seconds=0.2
        )
        await elsewhere.start()
        try:
            user = await f.create_user(platform, "dora", roles=["finance"])
            caller = Caller(subject=user.id, client_id="app", issued_at=time.time() - 1)
            elsewhere.check(caller)  # in force nowhere yet
            async with http_client(platform) as http:
                admin = platform.tokens.issue("usr_admin", roles=["admin"])
                response = await http.post(
                    f"/v1/identity/users/{user.id}/disable", headers=bearer(admin)
                )
                assert response.status_code == 200, response.text
            started = time.monotonic()
            while time.monotonic() - started < 5:
                try:
                    elsewhere.check(caller)
                except Exception:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the revocation did not reach the other process within 5 s")
        finally:
            await elsewhere.stop()


class TestBrowserSessions:
    async def _code_flow_tokens(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> tuple[str, str, dict[str, Any]]:
        await f.create_user(platform, "alice")
        app = await f.create_client(platform)
        pkce = f.Pkce.make()
        code = await f.authorization_code(http, app.client_id, pkce)
        response = await f.exchange_code(http, app.client_id, code, pkce.verifier)
        assert response.status_code == 200, response.text
        return app.client_id, code, response.json()

    async def test_logout_ends_the_sessions_access_tokens(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        _client_id, _code, tokens = await self._code_flow_tokens(platform, client)
        me = await client.get("/v1/identity/users/me", headers=bearer(tokens))
        assert me.status_code == 200, me.text

        response = await client.get("/oauth2/logout", params={"id_token_hint": tokens["id_token"]})
        assert response.status_code == 200, response.text
        assert_revoked(await client.get("/v1/identity/users/me", headers=bearer(tokens)))

    async def test_a_reused_code_ends_the_tokens_it_granted(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        client_id, code, tokens = await self._code_flow_tokens(platform, client)
        again = await f.exchange_code(client, client_id, code, "x" * 43)
        assert again.status_code == 400
        assert_revoked(await client.get("/v1/identity/users/me", headers=bearer(tokens)))


class TestIdentityOwnEndpoints:
    async def test_userinfo_and_introspection_see_a_disabled_users_token_as_dead(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        carol = await password_token(client, app, "carol", scope="openid profile")
        assert (await client.get("/oauth2/userinfo", headers=bearer(carol))).status_code == 200
        admin = platform.tokens.issue("usr_root", roles=["admin"])
        carol_id = await user_id(platform, "carol")
        response = await client.post(
            f"/v1/identity/users/{carol_id}/disable", headers=bearer(admin)
        )
        assert response.status_code == 200, response.text
        await client.post(f"/v1/identity/users/{carol_id}/enable", headers=bearer(admin))

        assert (await client.get("/oauth2/userinfo", headers=bearer(carol))).status_code == 401
        introspection = await client.post(
            "/oauth2/introspect", data={"token": carol["access_token"]}, auth=app
        )
        assert introspection.status_code == 200
        assert introspection.json() == {"active": False}


ALL_API_SCOPES = "ledger ledger:read ledger:write identity:admin"


class TestScopesPerRole:
    @pytest.mark.parametrize(
        ("role", "granted"),
        [
            ("admin", {"ledger", "ledger:read", "ledger:write", "identity:admin"}),
            ("finance", {"ledger", "ledger:read", "ledger:write"}),
            ("auditor", {"ledger:read"}),
            ("ops", set()),
            ("customer", set()),
            ("merchant", set()),
        ],
    )
    async def test_a_client_gets_only_what_the_users_roles_grant(
        self, platform: Platform, client: httpx.AsyncClient, role: str, granted: set[str]
    ) -> None:
        await f.create_user(platform, f"user_{role}", roles=[role])
        created = await f.create_client(
            platform,
            public=False,
            grant_types=["password"],
            password_grant_allowed=True,
            scopes=["openid", *ALL_API_SCOPES.split()],
        )
        assert created.client_secret is not None
        token = await password_token(
            client,
            (created.client_id, created.client_secret),
            f"user_{role}",
            scope=f"openid {ALL_API_SCOPES}",
        )
        assert set(token["scope"].split()) == {"openid", *granted}
        ledger = await client.get("/v1/ledger/trial-balance", headers=bearer(token))
        assert ledger.status_code == (200 if granted & {"ledger", "ledger:read"} else 403)
        admin_api = await client.get("/v1/identity/users", headers=bearer(token))
        assert admin_api.status_code == (200 if "identity:admin" in granted else 403)


class TestTokenEndpointIsNotReplayed:
    async def test_an_idempotency_key_never_hands_out_a_stored_token(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        app = await legacy_app(platform)
        form = {"grant_type": "client_credentials", "scope": "ledger"}
        headers = {"idempotency-key": "same-key"}
        first = await client.post("/oauth2/token", data=form, auth=app, headers=headers)
        second = await client.post("/oauth2/token", data=form, auth=app, headers=headers)
        assert first.status_code == second.status_code == 200, second.text
        assert "idempotent-replayed" not in second.headers
        assert first.json()["access_token"] != second.json()["access_token"]
