"""Admin API: OAuth2 clients and users, for the `admin` role; every change an event."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.identity import accounts as a
from tests.identity import factories as f

CLIENTS = "/v1/identity/clients"
USERS = "/v1/identity/users"
CONFIDENTIAL: dict[str, Any] = {
    "name": "Merchant backend",
    "public": False,
    "grant_types": ["client_credentials"],
    "scopes": ["payments"],
    "roles": ["merchant"],
}


@pytest.fixture
def admin(identity_platform: Platform) -> dict[str, str]:
    return a.bearer(identity_platform, "usr_admin", ("admin",))


async def create(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> Any:
    response = await client.post(CLIENTS, json=CONFIDENTIAL | fields, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def client_credentials(client: httpx.AsyncClient, client_id: str, secret: str) -> int:
    response = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return response.status_code


class TestCreateClient:
    async def test_confidential_client_secret_is_shown_once_and_works(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin)
        assert created["client_secret"]
        status = await client_credentials(identity, created["client_id"], created["client_secret"])
        assert status == 200
        shown = (await identity.get(f"{CLIENTS}/{created['client_id']}", headers=admin)).json()
        assert "client_secret" not in shown
        events = await a.outbox_events(identity_platform, "identity.client.created")
        assert [event["actor"] for event in events] == ["usr_admin"]
        assert created["client_secret"] not in str(events)

    async def test_public_client_has_no_secret(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(
            identity,
            admin,
            public=True,
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=["https://app.example.com/callback"],
            scopes=["openid"],
            roles=[],
        )
        assert created["public"] is True
        assert created["client_secret"] is None
        assert created["redirect_uris"] == ["https://app.example.com/callback"]

    async def test_public_client_credentials_is_refused(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await identity.post(CLIENTS, json=CONFIDENTIAL | {"public": True}, headers=admin)
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_client_configuration"

    async def test_taken_client_id_is_a_conflict(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await create(identity, admin, client_id="backend")
        response = await identity.post(
            CLIENTS, json=CONFIDENTIAL | {"client_id": "backend"}, headers=admin
        )
        assert response.status_code == 409
        assert response.json()["code"] == "client_id_taken"

    async def test_customer_is_forbidden(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        headers = a.bearer(identity_platform, "usr_x", ("customer",))
        response = await identity.post(CLIENTS, json=CONFIDENTIAL, headers=headers)
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"

    async def test_anonymous_is_unauthenticated(self, identity: httpx.AsyncClient) -> None:
        response = await identity.post(CLIENTS, json=CONFIDENTIAL)
        assert response.status_code == 401

    async def test_rate_limit_tier_defaults_to_bronze(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin)
        assert created["rate_limit_tier"] == "bronze"
        events = await a.outbox_events(identity_platform, "identity.client.created")
        assert events[0]["rate_limit_tier"] == "bronze"

    async def test_rate_limit_tier_is_kept_as_given(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin, rate_limit_tier="gold")
        shown = (await identity.get(f"{CLIENTS}/{created['client_id']}", headers=admin)).json()
        assert (created["rate_limit_tier"], shown["rate_limit_tier"]) == ("gold", "gold")

    async def test_platform_service_account_defaults_to_unlimited(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin, client_id="service-reports")
        assert created["rate_limit_tier"] == "unlimited"

    async def test_unknown_rate_limit_tier_is_422_and_creates_nothing(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        body = CONFIDENTIAL | {"client_id": "backend", "rate_limit_tier": "platinum"}
        response = await identity.post(CLIENTS, json=body, headers=admin)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert (await identity.get(f"{CLIENTS}/backend", headers=admin)).status_code == 404

    async def test_identity_issued_admin_token_is_accepted(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        service = await f.create_client(
            identity_platform,
            public=False,
            grant_types=["client_credentials"],
            roles=["admin"],
            redirect_uris=[],
            scopes=[],
        )
        assert service.client_secret is not None
        response = await identity.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(service.client_id, service.client_secret),
        )
        headers = {"authorization": f"Bearer {response.json()['access_token']}"}
        assert (await identity.post(CLIENTS, json=CONFIDENTIAL, headers=headers)).status_code == 201


class TestListClients:
    async def test_pages_with_a_cursor(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        made = [(await create(identity, admin, name=f"app {n}"))["client_id"] for n in range(5)]
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await identity.get(CLIENTS, params=params, headers=admin)).json()
            assert len(page["data"]) <= 2
            seen += [item["client_id"] for item in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == made

    async def test_shows_each_rate_limit_tier(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await create(identity, admin, name="free")
        await create(identity, admin, name="paid", rate_limit_tier="silver")
        page = (await identity.get(CLIENTS, headers=admin)).json()
        tiers = {item["name"]: item["rate_limit_tier"] for item in page["data"]}
        assert tiers == {"free": "bronze", "paid": "silver"}

    async def test_tampered_cursor_is_422(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await identity.get(CLIENTS, params={"cursor": "bm90LWpzb24"}, headers=admin)
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_cursor"


class TestGetClient:
    async def test_unknown_client_is_404(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await identity.get(f"{CLIENTS}/nobody", headers=admin)
        assert response.status_code == 404
        assert response.json()["code"] == "client_not_found"


class TestDisableClient:
    async def test_disabled_client_gets_no_token(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin)
        response = await identity.post(f"{CLIENTS}/{created['client_id']}/disable", headers=admin)
        assert response.json()["status"] == "disabled"
        status = await client_credentials(identity, created["client_id"], created["client_secret"])
        assert status == 401
        assert "identity.client.disabled" in await a.outbox_types(identity_platform)

    async def test_enabled_again_gets_tokens(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin)
        await identity.post(f"{CLIENTS}/{created['client_id']}/disable", headers=admin)
        await identity.post(f"{CLIENTS}/{created['client_id']}/enable", headers=admin)
        status = await client_credentials(identity, created["client_id"], created["client_secret"])
        assert status == 200


class TestDeleteClient:
    async def test_deleted_client_is_gone(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin)
        response = await identity.delete(f"{CLIENTS}/{created['client_id']}", headers=admin)
        assert response.status_code == 204
        gone = await identity.get(f"{CLIENTS}/{created['client_id']}", headers=admin)
        assert gone.status_code == 404
        assert "identity.client.deleted" in await a.outbox_types(identity_platform)


class TestSetClientRateLimitTier:
    async def test_changes_the_tier_and_records_who_did(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin)
        path = f"{CLIENTS}/{created['client_id']}/rate-limit-tier"
        response = await identity.put(path, json={"rate_limit_tier": "gold"}, headers=admin)
        assert response.status_code == 200, response.text
        assert response.json()["rate_limit_tier"] == "gold"
        shown = (await identity.get(f"{CLIENTS}/{created['client_id']}", headers=admin)).json()
        assert shown["rate_limit_tier"] == "gold"
        events = await a.outbox_events(identity_platform, "identity.client.rate_limit_tier_changed")
        assert events == [
            {
                "actor": "usr_admin",
                "client_id": created["client_id"],
                "before": "bronze",
                "after": "gold",
            }
        ]

    async def test_unknown_tier_is_422_and_changes_nothing(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin, rate_limit_tier="silver")
        path = f"{CLIENTS}/{created['client_id']}/rate-limit-tier"
        for body in ({"rate_limit_tier": "platinum"}, {"rate_limit_tier": None}, {}):
            response = await identity.put(path, json=body, headers=admin)
            assert response.status_code == 422, body
            assert response.headers["content-type"] == "application/problem+json"
        shown = (await identity.get(f"{CLIENTS}/{created['client_id']}", headers=admin)).json()
        assert shown["rate_limit_tier"] == "silver"
        assert "identity.client.rate_limit_tier_changed" not in await a.outbox_types(
            identity_platform
        )

    async def test_unknown_client_is_404(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await identity.put(
            f"{CLIENTS}/nobody/rate-limit-tier", json={"rate_limit_tier": "gold"}, headers=admin
        )
        assert response.status_code == 404
        assert response.json()["code"] == "client_not_found"

    async def test_non_admin_is_refused_and_changes_nothing(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin)
        path = f"{CLIENTS}/{created['client_id']}/rate-limit-tier"
        merchant = a.bearer(identity_platform, "usr_merchant", ("merchant",))
        refused = await identity.put(path, json={"rate_limit_tier": "unlimited"}, headers=merchant)
        anonymous = await identity.put(path, json={"rate_limit_tier": "unlimited"})
        assert (refused.status_code, anonymous.status_code) == (403, 401)
        shown = (await identity.get(f"{CLIENTS}/{created['client_id']}", headers=admin)).json()
        assert shown["rate_limit_tier"] == "bronze"


class TestRotateClientSecret:
    async def test_new_secret_works_and_old_does_not(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        created = await create(identity, admin)
        response = await identity.post(f"{CLIENTS}/{created['client_id']}/secret", headers=admin)
        assert response.status_code == 200
        secret = response.json()["client_secret"]
        assert secret != created["client_secret"]
        assert await client_credentials(identity, created["client_id"], secret) == 200
        old = await client_credentials(identity, created["client_id"], created["client_secret"])
        assert old == 401

    async def test_public_client_is_a_conflict(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        app = await f.create_client(identity_platform)
        response = await identity.post(f"{CLIENTS}/{app.client_id}/secret", headers=admin)
        assert response.status_code == 409
        assert response.json()["code"] == "public_client_has_no_secret"


class TestListUsers:
    async def test_pages_with_a_cursor(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        made = [(await a.register(identity, f"user{n}"))["id"] for n in range(3)]
        first = (await identity.get(USERS, params={"limit": 2}, headers=admin)).json()
        rest = (
            await identity.get(
                USERS, params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin
            )
        ).json()
        assert [u["id"] for u in first["data"] + rest["data"]] == made
        assert rest["next_cursor"] is None

    async def test_customer_is_forbidden(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        _, headers = await a.signed_in(identity_platform, identity, "carol")
        assert (await identity.get(USERS, headers=headers)).status_code == 403


class TestGetUser:
    async def test_returns_the_user_with_roles(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await a.register(identity, "carol")
        response = await identity.get(f"{USERS}/{user['id']}", headers=admin)
        assert response.json()["roles"] == ["customer"]

    async def test_unknown_user_is_404(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await identity.get(f"{USERS}/usr_nobody", headers=admin)
        assert response.status_code == 404
        assert response.json()["code"] == "user_not_found"


class TestDisableUser:
    async def test_disabled_user_cannot_log_in(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await a.register(identity, "carol")
        response = await identity.post(f"{USERS}/{user['id']}/disable", headers=admin)
        assert response.json()["status"] == "disabled"
        app = await f.create_client(identity_platform)
        params = f.authorize_params(app.client_id, f.Pkce.make())
        login = await f.login(identity, params, "carol", a.STRONG_PASSWORD)
        assert login.status_code != 302
        assert "identity.user.disabled" in await a.outbox_types(identity_platform)

    async def test_enabled_again_can_log_in(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await a.register(identity, "carol")
        await identity.post(f"{USERS}/{user['id']}/disable", headers=admin)
        await identity.post(f"{USERS}/{user['id']}/enable", headers=admin)
        app = await f.create_client(identity_platform)
        params = f.authorize_params(app.client_id, f.Pkce.make())
        login = await f.login(identity, params, "carol", a.STRONG_PASSWORD)
        assert "code" in f.redirect_query(login)


class TestSelfLockout:
    async def test_admin_cannot_disable_themselves(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        user = await a.register(identity, "root")
        headers = a.bearer(identity_platform, user["id"], ("admin",))
        response = await identity.post(f"{USERS}/{user['id']}/disable", headers=headers)
        assert response.status_code == 409
        assert response.json()["code"] == "admin_cannot_lock_themselves_out"

    async def test_admin_cannot_drop_their_own_admin_role(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        user = await a.register(identity, "root")
        headers = a.bearer(identity_platform, user["id"], ("admin",))
        response = await identity.put(
            f"{USERS}/{user['id']}/roles", json={"roles": ["ops"]}, headers=headers
        )
        assert response.status_code == 409
        assert response.json()["code"] == "admin_cannot_lock_themselves_out"


class TestSetUserRoles:
    async def test_replaces_the_roles(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await a.register(identity, "carol")
        response = await identity.put(
            f"{USERS}/{user['id']}/roles", json={"roles": ["finance", "ops"]}, headers=admin
        )
        assert response.json()["roles"] == ["finance", "ops"]
        assert "identity.user.roles_changed" in await a.outbox_types(identity_platform)

    async def test_unknown_role_is_422(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await a.register(identity, "carol")
        response = await identity.put(
            f"{USERS}/{user['id']}/roles", json={"roles": ["root"]}, headers=admin
        )
        assert response.status_code == 422
