"""SCIM 2.0 at /scim2 (RFC 7643/7644): an independent SCIM client (scim2-client) drives
create / filter / PATCH / delete; raw HTTP checks the response shapes RFC 7644 asks for."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from scim2_client.engines.asgi import ASGISCIMClient
from scim2_models import (
    Email,
    Group,
    ListResponse,
    Name,
    PatchOp,
    PatchOperation,
    ScimProvider,
    SearchRequest,
    User,
)

from paymesh.platform import Platform
from tests.identity import accounts as a
from tests.identity import factories as f

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def admin(identity_platform: Platform) -> dict[str, str]:
    return a.bearer(identity_platform, "usr_admin", ("admin",))


def user_body(username: str, email: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [USER_SCHEMA], "userName": username, **extra}
    if email:
        body["emails"] = [{"value": email, "primary": True, "type": "work"}]
    return body


async def create_user(
    client: httpx.AsyncClient, headers: dict[str, str], username: str, email: str | None = None
) -> Any:
    response = await client.post("/scim2/Users", json=user_body(username, email), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)


class TestScimClient:
    async def test_create_filter_patch_delete(
        self, identity_platform: Platform, admin: dict[str, str]
    ) -> None:
        scim = ASGISCIMClient(
            identity_platform,
            base_url=f"{f.ISSUER}/scim2",
            headers=admin,
            provider=ScimProvider([User, Group]),
        )
        created: Any = await scim.create(
            User(
                user_name="bjensen",
                name=Name(given_name="Barbara", family_name="Jensen"),
                emails=[Email(value="bjensen@example.com", primary=True)],
            )
        )
        assert isinstance(created, User) and created.id
        found = await scim.query(
            User, query_parameters=SearchRequest(filter='emails.value eq "bjensen@example.com"')
        )
        assert isinstance(found, ListResponse)
        assert found.total_results == 1
        assert [user.id for user in found.resources or []] == [created.id]
        await scim.modify(
            User,
            created.id,
            PatchOp[User[Any]](
                operations=[
                    PatchOperation(op=PatchOperation.Op.replace_, path="active", value=False)
                ]
            ),
        )
        fetched = await scim.query(User, created.id)
        assert isinstance(fetched, User) and fetched.active is False
        await scim.delete(User, created.id)
        gone = await scim.query(
            User, query_parameters=SearchRequest(filter='userName eq "bjensen"')
        )
        assert isinstance(gone, ListResponse) and gone.total_results == 0


class TestCreateUser:
    async def test_returns_the_resource_with_location(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        body = user_body("BJensen", "BJensen@Example.com", name={"givenName": "Barbara"})
        response = await identity.post("/scim2/Users", json=body, headers=admin)
        assert response.status_code == 201
        assert response.headers["content-type"].startswith("application/scim+json")
        user = response.json()
        assert user["schemas"] == [USER_SCHEMA]
        assert user["userName"] == "bjensen"
        assert user["emails"][0]["value"] == "bjensen@example.com"
        assert user["active"] is True
        assert user["meta"]["resourceType"] == "User"
        assert response.headers["location"] == user["meta"]["location"]
        assert user["meta"]["location"].endswith(f"/scim2/Users/{user['id']}")

    async def test_provisioned_user_logs_in_with_its_password(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        body = user_body("bjensen", password=a.STRONG_PASSWORD)
        response = await identity.post("/scim2/Users", json=body, headers=admin)
        assert "password" not in response.json()
        app = await f.create_client(identity_platform)
        params = f.authorize_params(app.client_id, f.Pkce.make())
        login = await f.login(identity, params, "bjensen", a.STRONG_PASSWORD)
        assert "code" in f.redirect_query(login)

    async def test_taken_user_name_is_a_uniqueness_error(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await create_user(identity, admin, "bjensen")
        response = await identity.post("/scim2/Users", json=user_body("BJENSEN"), headers=admin)
        assert_error(response, 409)
        assert response.json()["scimType"] == "uniqueness"

    async def test_weak_password_is_an_invalid_value(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        body = user_body("bjensen", password="short")
        response = await identity.post("/scim2/Users", json=body, headers=admin)
        assert_error(response, 400)
        assert response.json()["scimType"] == "invalidValue"

    async def test_records_an_event(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await create_user(identity, admin, "bjensen")
        events = await a.outbox_events(identity_platform, "identity.user.created")
        assert events == [{"actor": "usr_admin", "via": "scim", "user_id": user["id"]}]


class TestAuthorization:
    async def test_without_token_is_401_with_challenge(self, identity: httpx.AsyncClient) -> None:
        response = await identity.get("/scim2/Users")
        assert_error(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_invalid_token_is_401(self, identity: httpx.AsyncClient) -> None:
        response = await identity.get(
            "/scim2/Users", headers={"authorization": "Bearer not-a-token"}
        )
        assert_error(response, 401)

    async def test_customer_is_403(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        headers = a.bearer(identity_platform, "usr_x", ("customer",))
        assert_error(await identity.get("/scim2/Users", headers=headers), 403)

    async def test_service_provider_config_needs_no_token(
        self, identity: httpx.AsyncClient
    ) -> None:
        response = await identity.get("/scim2/ServiceProviderConfig")
        assert response.status_code == 200
        assert response.json()["patch"]["supported"] is True


class TestGetUser:
    async def test_includes_groups(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await a.register(identity, "carol")
        response = await identity.get(f"/scim2/Users/{user['id']}", headers=admin)
        assert response.status_code == 200
        assert [group["value"] for group in response.json()["groups"]] == ["customer"]

    async def test_unknown_is_404(self, identity: httpx.AsyncClient, admin: dict[str, str]) -> None:
        assert_error(await identity.get("/scim2/Users/usr_nobody", headers=admin), 404)


class TestListUsers:
    async def test_list_response_shape(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await create_user(identity, admin, "bjensen")
        response = await identity.get("/scim2/Users", headers=admin)
        body = response.json()
        assert body["schemas"] == [LIST_SCHEMA]
        assert body["totalResults"] == 1
        assert body["startIndex"] == 1
        assert body["Resources"][0]["userName"] == "bjensen"

    async def test_filter_user_name_eq(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await create_user(identity, admin, "bjensen")
        await create_user(identity, admin, "jsmith")
        params = {"filter": 'userName eq "JSMITH"'}
        body = (await identity.get("/scim2/Users", params=params, headers=admin)).json()
        assert [user["userName"] for user in body["Resources"]] == ["jsmith"]

    async def test_filter_emails_value_eq(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await create_user(identity, admin, "bjensen", "b@example.com")
        await create_user(identity, admin, "jsmith", "j@example.com")
        params = {"filter": 'emails.value eq "j@example.com"'}
        body = (await identity.get("/scim2/Users", params=params, headers=admin)).json()
        assert body["totalResults"] == 1
        assert body["Resources"][0]["userName"] == "jsmith"

    async def test_no_match_is_an_empty_list(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        params = {"filter": 'userName eq "nobody"'}
        body = (await identity.get("/scim2/Users", params=params, headers=admin)).json()
        assert body["totalResults"] == 0
        assert body.get("Resources", []) == []

    async def test_pages_with_start_index_and_count(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        for name in ("u1", "u2", "u3", "u4", "u5"):
            await create_user(identity, admin, name)
        params = {"startIndex": "3", "count": "2"}
        body = (await identity.get("/scim2/Users", params=params, headers=admin)).json()
        assert body["totalResults"] == 5
        assert body["startIndex"] == 3
        assert body["itemsPerPage"] == 2
        assert [user["userName"] for user in body["Resources"]] == ["u3", "u4"]

    async def test_bad_filter_is_invalid_filter(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        params = {"filter": "userName eq"}
        response = await identity.get("/scim2/Users", params=params, headers=admin)
        assert_error(response, 400)
        assert response.json()["scimType"] == "invalidFilter"


class TestPatchUser:
    async def test_replace_active_disables_login(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await a.register(identity, "carol")
        operation = {"op": "replace", "path": "active", "value": False}
        response = await identity.patch(
            f"/scim2/Users/{user['id']}", json=patch(operation), headers=admin
        )
        assert response.status_code in (200, 204)
        app = await f.create_client(identity_platform)
        params = f.authorize_params(app.client_id, f.Pkce.make())
        login = await f.login(identity, params, "carol", a.STRONG_PASSWORD)
        assert login.status_code != 302

    async def test_replace_name_and_emails(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await create_user(identity, admin, "bjensen", "old@example.com")
        operations = patch(
            {"op": "replace", "path": "name", "value": {"givenName": "Babs", "familyName": "J"}},
            {"op": "replace", "path": "emails", "value": [{"value": "new@example.com"}]},
        )
        await identity.patch(f"/scim2/Users/{user['id']}", json=operations, headers=admin)
        body = (await identity.get(f"/scim2/Users/{user['id']}", headers=admin)).json()
        assert body["name"]["givenName"] == "Babs"
        assert body["name"]["familyName"] == "J"
        assert [email["value"] for email in body["emails"]] == ["new@example.com"]

    async def test_email_of_another_user_is_a_uniqueness_error(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await create_user(identity, admin, "jsmith", "j@example.com")
        user = await create_user(identity, admin, "bjensen", "b@example.com")
        operation = {"op": "replace", "path": "emails", "value": [{"value": "j@example.com"}]}
        response = await identity.patch(
            f"/scim2/Users/{user['id']}", json=patch(operation), headers=admin
        )
        assert_error(response, 409)


class TestDeleteUser:
    async def test_deleted_user_is_gone(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await create_user(identity, admin, "bjensen")
        response = await identity.delete(f"/scim2/Users/{user['id']}", headers=admin)
        assert response.status_code == 204
        assert_error(await identity.get(f"/scim2/Users/{user['id']}", headers=admin), 404)
        assert "identity.user.deleted" in await a.outbox_types(identity_platform)

    async def test_unknown_is_404(self, identity: httpx.AsyncClient, admin: dict[str, str]) -> None:
        assert_error(await identity.delete("/scim2/Users/usr_nobody", headers=admin), 404)


class TestGroups:
    async def test_roles_are_the_groups(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        body = (await identity.get("/scim2/Groups", headers=admin)).json()
        assert body["schemas"] == [LIST_SCHEMA]
        names = {group["displayName"] for group in body["Resources"]}
        assert names == {"customer", "merchant", "ops", "finance", "compliance", "auditor", "admin"}

    async def test_filter_display_name(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        params = {"filter": 'displayName eq "finance"'}
        body = (await identity.get("/scim2/Groups", params=params, headers=admin)).json()
        assert [group["id"] for group in body["Resources"]] == ["finance"]

    async def test_add_and_remove_members(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await create_user(identity, admin, "bjensen")
        add = {"op": "add", "path": "members", "value": [{"value": user["id"]}]}
        response = await identity.patch("/scim2/Groups/finance", json=patch(add), headers=admin)
        assert response.status_code in (200, 204)
        group = (await identity.get("/scim2/Groups/finance", headers=admin)).json()
        assert [member["value"] for member in group["members"]] == [user["id"]]
        fetched = (await identity.get(f"/scim2/Users/{user['id']}", headers=admin)).json()
        assert [group["value"] for group in fetched["groups"]] == ["finance"]
        remove = {"op": "remove", "path": f'members[value eq "{user["id"]}"]'}
        await identity.patch("/scim2/Groups/finance", json=patch(remove), headers=admin)
        group = (await identity.get("/scim2/Groups/finance", headers=admin)).json()
        assert group.get("members", []) == []

    async def test_membership_gives_the_role_in_the_admin_api(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        user = await a.register(identity, "carol")
        add = {"op": "add", "path": "members", "value": [{"value": user["id"]}]}
        await identity.patch("/scim2/Groups/ops", json=patch(add), headers=admin)
        shown = (await identity.get(f"/v1/identity/users/{user['id']}", headers=admin)).json()
        assert shown["roles"] == ["customer", "ops"]

    async def test_unknown_member_is_an_invalid_value(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        add = {"op": "add", "path": "members", "value": [{"value": "usr_nobody"}]}
        response = await identity.patch("/scim2/Groups/ops", json=patch(add), headers=admin)
        assert_error(response, 400)

    async def test_creating_a_role_group_is_a_uniqueness_error(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "ops"}
        assert_error(await identity.post("/scim2/Groups", json=body, headers=admin), 409)

    async def test_unknown_group_is_404(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        assert_error(await identity.get("/scim2/Groups/root", headers=admin), 404)


class TestSchemas:
    async def test_user_schema_announces_only_what_identity_keeps(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await identity.get(f"/scim2/Schemas/{USER_SCHEMA}", headers=admin)
        assert response.status_code == 200, response.text
        names = {attribute["name"] for attribute in response.json()["attributes"]}
        expected = {"userName", "name", "active", "password", "emails", "phoneNumbers", "groups"}
        assert names == expected

    async def test_an_attribute_not_kept_is_refused(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        body = user_body("bjensen", nickName="Babs")
        response = await identity.post("/scim2/Users", json=body, headers=admin)
        assert_error(response, 400)
