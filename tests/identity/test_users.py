"""Self-service users: registration, the signed-in user's profile and password."""

from __future__ import annotations

import asyncio

import httpx

from paymesh.platform import Platform
from tests.identity import accounts as a
from tests.identity import factories as f


class TestRegister:
    async def test_creates_an_active_customer(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        user = await a.register(identity, "Carol", email="Carol@Example.com", given_name="Carol")
        assert user["username"] == "carol"
        assert user["email"] == "carol@example.com"
        assert user["roles"] == ["customer"]
        assert user["status"] == "active"
        assert "password" not in user
        assert "identity.user.registered" in await a.outbox_types(identity_platform)

    async def test_roles_cannot_be_chosen(self, identity: httpx.AsyncClient) -> None:
        body = {"username": "mallory", "password": a.STRONG_PASSWORD, "roles": ["admin"]}
        response = await identity.post("/v1/identity/users", json=body)
        assert response.status_code == 422

    async def test_short_password_is_refused(self, identity: httpx.AsyncClient) -> None:
        body = {"username": "carol", "password": "short-pass1"}
        response = await identity.post("/v1/identity/users", json=body)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "password_too_weak"

    async def test_password_equal_to_username_is_refused(self, identity: httpx.AsyncClient) -> None:
        body = {"username": "carol.longname", "password": "Carol.LongName"}
        response = await identity.post("/v1/identity/users", json=body)
        assert response.json()["code"] == "password_too_weak"

    async def test_password_equal_to_email_is_refused(self, identity: httpx.AsyncClient) -> None:
        body = {"username": "carol", "email": "carol@example.com", "password": "carol@example.com"}
        response = await identity.post("/v1/identity/users", json=body)
        assert response.json()["code"] == "password_too_weak"

    async def test_common_password_is_refused(self, identity: httpx.AsyncClient) -> None:
        body = {"username": "carol", "password": "Password1234"}
        response = await identity.post("/v1/identity/users", json=body)
        assert response.status_code == 422
        assert response.json()["code"] == "password_too_weak"

    async def test_taken_username_is_a_conflict(self, identity: httpx.AsyncClient) -> None:
        await a.register(identity, "carol")
        body = {"username": "CAROL", "password": a.STRONG_PASSWORD}
        response = await identity.post("/v1/identity/users", json=body)
        assert response.status_code == 409
        assert response.json()["code"] == "username_taken"

    async def test_taken_email_is_a_conflict(self, identity: httpx.AsyncClient) -> None:
        await a.register(identity, "carol", email="c@example.com")
        body = {"username": "dave", "email": "C@example.com", "password": a.STRONG_PASSWORD}
        response = await identity.post("/v1/identity/users", json=body)
        assert response.status_code == 409
        assert response.json()["code"] == "email_taken"

    async def test_idempotency_key_replays_the_first_answer(
        self, identity: httpx.AsyncClient
    ) -> None:
        body = {"username": "carol", "password": a.STRONG_PASSWORD}
        headers = {"idempotency-key": "register-carol-1"}
        first = await identity.post("/v1/identity/users", json=body, headers=headers)
        again = await identity.post("/v1/identity/users", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]

    async def test_registered_user_can_log_in(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await a.register(identity, "carol")
        app = await f.create_client(identity_platform)
        params = f.authorize_params(app.client_id, f.Pkce.make())
        response = await f.login(identity, params, "carol", a.STRONG_PASSWORD)
        assert "code" in f.redirect_query(response)


class TestGetMe:
    async def test_returns_the_token_subject(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        user, headers = await a.signed_in(identity_platform, identity, "carol")
        response = await identity.get("/v1/identity/users/me", headers=headers)
        assert response.status_code == 200
        assert response.json()["id"] == user["id"]

    async def test_without_token_is_401(self, identity: httpx.AsyncClient) -> None:
        response = await identity.get("/v1/identity/users/me")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"

    async def test_token_of_no_user_is_403(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        headers = a.bearer(identity_platform, "cli_service_account")
        response = await identity.get("/v1/identity/users/me", headers=headers)
        assert response.status_code == 403
        assert response.json()["code"] == "not_a_user"

    async def test_disabled_user_token_is_revoked(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        user, headers = await a.signed_in(identity_platform, identity, "carol")
        admin = a.bearer(identity_platform, "usr_admin", ("admin",))
        await identity.post(f"/v1/identity/users/{user['id']}/disable", headers=admin)
        response = await identity.get("/v1/identity/users/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"] == "the token was revoked"


class TestUpdateMe:
    async def test_changes_names_and_phone(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        body = {"given_name": "Carol", "family_name": "Ng", "phone": "+41790000000"}
        response = await identity.patch("/v1/identity/users/me", json=body, headers=headers)
        assert response.status_code == 200
        assert response.json() | body == response.json()

    async def test_null_clears_a_field(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        await identity.patch(
            "/v1/identity/users/me", json={"phone": "+41790000000"}, headers=headers
        )
        response = await identity.patch(
            "/v1/identity/users/me", json={"phone": None}, headers=headers
        )
        assert response.json()["phone"] is None

    async def test_new_email_is_unverified_and_lowercased(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        response = await identity.patch(
            "/v1/identity/users/me", json={"email": "New@Example.com"}, headers=headers
        )
        assert response.json()["email"] == "new@example.com"
        assert response.json()["email_verified"] is False

    async def test_email_of_another_user_is_a_conflict(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await a.register(identity, "dave", email="dave@example.com")
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        response = await identity.patch(
            "/v1/identity/users/me", json={"email": "dave@example.com"}, headers=headers
        )
        assert response.status_code == 409
        assert response.json()["code"] == "email_taken"

    async def test_username_cannot_be_changed(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        response = await identity.patch(
            "/v1/identity/users/me", json={"username": "root"}, headers=headers
        )
        assert response.status_code == 422


class TestChangePassword:
    async def test_new_password_works_and_old_does_not(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        body = {"current_password": a.STRONG_PASSWORD, "new_password": "violet-harbor-kite-77"}
        response = await identity.post("/v1/identity/users/me/password", json=body, headers=headers)
        assert response.status_code == 204
        app = await f.create_client(identity_platform)
        old = await f.login(
            identity, f.authorize_params(app.client_id, f.Pkce.make()), "carol", a.STRONG_PASSWORD
        )
        assert old.status_code != 302
        new = await f.login(
            identity,
            f.authorize_params(app.client_id, f.Pkce.make()),
            "carol",
            "violet-harbor-kite-77",
        )
        assert "code" in f.redirect_query(new)

    async def test_wrong_current_password_is_403(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        body = {"current_password": "not-my-password-1", "new_password": "violet-harbor-kite-77"}
        response = await identity.post("/v1/identity/users/me/password", json=body, headers=headers)
        assert response.status_code == 403
        assert response.json()["code"] == "wrong_current_password"

    async def test_weak_new_password_is_refused(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        body = {"current_password": a.STRONG_PASSWORD, "new_password": "short"}
        response = await identity.post("/v1/identity/users/me/password", json=body, headers=headers)
        assert response.json()["code"] == "password_too_weak"

    async def test_revokes_the_users_refresh_tokens(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        user, headers = await a.signed_in(identity_platform, identity, "carol")
        app = await f.create_client(identity_platform)
        pkce = f.Pkce.make()
        params = f.authorize_params(app.client_id, pkce)
        code = f.redirect_query(await f.login(identity, params, "carol", a.STRONG_PASSWORD))["code"]
        tokens = (await f.exchange_code(identity, app.client_id, code, pkce.verifier)).json()
        body = {"current_password": a.STRONG_PASSWORD, "new_password": "violet-harbor-kite-77"}
        await identity.post("/v1/identity/users/me/password", json=body, headers=headers)
        response = await identity.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": app.client_id,
            },
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        assert "identity.user.password_changed" in await a.outbox_types(identity_platform)
        assert user["id"]


class TestRegisterConcurrently:
    async def test_same_username_racing_gives_one_user(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        body = {"username": "racer", "password": a.STRONG_PASSWORD}
        responses = await asyncio.gather(
            *(identity.post("/v1/identity/users", json=body) for _ in range(4))
        )
        assert sorted(response.status_code for response in responses) == [201, 409, 409, 409]
