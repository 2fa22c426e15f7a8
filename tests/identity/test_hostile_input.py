"""Input sent to crash identity: undecodable Basic credentials, passwords that UTF-8
cannot encode, NUL in forms of any spelling, multipart fields, SCIM paths, attributes,
members and filters, and admin cursors. Every answer is a 4xx, never a 500 or a dropped
connection, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.identity import accounts as a
from tests.identity import factories as f

PROBLEM = "application/problem+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def admin(identity_platform: Platform) -> dict[str, str]:
    return a.bearer(identity_platform, "usr_admin", ("admin",))


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, Any] = response.json()
    assert document["code"] == code, document
    return document


def basic(raw: bytes) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


class TestBasicCredentials:
    @pytest.mark.parametrize(
        "authorization",
        [
            "Basic //46/w==",
            basic(b"\xff\xfe:\xff")["authorization"],
            basic(b"demo\x00client:secret")["authorization"],
            basic(b"demo%00client:secret")["authorization"],
            basic(b"demo-client:sec%00ret")["authorization"],
        ],
        ids=["not-utf8", "not-utf8-2", "nul", "encoded-nul", "encoded-nul-in-secret"],
    )
    async def test_the_token_endpoint_answers_401_invalid_client(
        self, identity: httpx.AsyncClient, authorization: str
    ) -> None:
        response = await identity.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"authorization": authorization},
        )

        document = assert_refused(response, 401, "invalid_client")
        assert document["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")

    @pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
    async def test_other_client_endpoints_too(self, identity: httpx.AsyncClient, path: str) -> None:
        response = await identity.post(
            path, data={"token": "x"}, headers={"authorization": "Basic //46/w=="}
        )

        assert_refused(response, 401, "invalid_client")

    async def test_decodable_credentials_still_work(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        client = await f.create_client(
            identity_platform, public=False, grant_types=["client_credentials"], scopes=["openid"]
        )
        assert client.client_secret is not None

        response = await identity.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, client.client_secret),
        )

        assert response.status_code == 200, response.text


class TestRegistration:
    @pytest.mark.parametrize(
        "password", ["\ud800" + "x" * 14, "plum-orbit\udfff-candle", "plum-orbit\x00candle"]
    )
    async def test_a_password_utf8_cannot_encode_is_refused(
        self, identity: httpx.AsyncClient, password: str
    ) -> None:
        content = json.dumps({"username": "mallory", "password": password}).encode()

        response = await identity.post(
            "/v1/identity/users", content=content, headers={"content-type": "application/json"}
        )

        assert_refused(response, 400, "invalid_characters")

    async def test_the_schema_refuses_it_too(self) -> None:
        from pydantic import ValidationError

        from paymesh.identity.accounts.schemas import PasswordChange, Registration

        with pytest.raises(ValidationError):
            Registration(username="mallory", password="plum-orbit\ud800-candle")  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            PasswordChange(current_password="a\x00", new_password="b")  # type: ignore[arg-type]

    async def test_a_duplicate_key_is_refused(self, identity: httpx.AsyncClient) -> None:
        content = json.dumps({"username": "mallory", "password": a.STRONG_PASSWORD}).encode()
        content = content.replace(b'"username"', b'"username": "eve", "username"', 1)

        response = await identity.post(
            "/v1/identity/users", content=content, headers={"content-type": "application/json"}
        )

        assert_refused(response, 400, "duplicate_json_key")


class TestForms:
    @pytest.mark.parametrize(
        "content_type",
        [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded",
            "APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8",
        ],
    )
    async def test_a_nul_in_a_token_request_is_400(
        self, identity: httpx.AsyncClient, content_type: str
    ) -> None:
        content = b"grant_type=client_credentials&client_id=demo%00client&client_secret=x"

        response = await identity.post(
            "/oauth2/token", content=content, headers={"content-type": content_type}
        )

        assert_refused(response, 400, "invalid_characters")

    async def test_a_nul_in_a_multipart_field_is_400(self, identity: httpx.AsyncClient) -> None:
        fields = {
            "grant_type": (None, b"client_credentials"),
            "client_id": (None, b"demo\x00client"),
            "client_secret": (None, b"x"),
        }

        response = await identity.post("/oauth2/token", files=fields)

        assert_refused(response, 400, "invalid_characters")

    async def test_a_nul_in_the_login_form_is_400(self, identity: httpx.AsyncClient) -> None:
        response = await identity.post(
            "/oauth2/authorize", data={"username": "alice\x00", "password": "x"}
        )

        assert_refused(response, 400, "invalid_characters")

    async def test_a_nul_in_the_authorize_query_is_400(self, identity: httpx.AsyncClient) -> None:
        response = await identity.get(
            "/oauth2/authorize", params={"client_id": "demo\x00", "response_type": "code"}
        )

        assert_refused(response, 400, "invalid_characters")


class TestScim:
    async def test_a_nul_in_the_path_is_400_not_a_dropped_connection(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await identity.get("/scim2/Users/a%00b", headers=admin)

        assert_refused(response, 400, "invalid_characters")

    @pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
    async def test_a_newline_in_an_id_is_answered_by_scim(
        self, identity: httpx.AsyncClient, admin: dict[str, str], method: str
    ) -> None:
        response = await identity.request(method, "/scim2/Users/%0A*L", headers=admin)

        # SCIM's own answer (404, or 400 for a PATCH without its body), not the platform's.
        assert response.status_code in (400, 404), response.text
        assert response.headers["content-type"].startswith("application/scim+json")

    @pytest.mark.parametrize("username", ["a\u0000b", "a\ud800b"], ids=["nul", "surrogate"])
    async def test_bad_text_in_a_user_name_is_400(
        self, identity: httpx.AsyncClient, admin: dict[str, str], username: str
    ) -> None:
        content = json.dumps({"schemas": [USER_SCHEMA], "userName": username}).encode()

        response = await identity.post(
            "/scim2/Users",
            content=content,
            headers={**admin, "content-type": "application/scim+json"},
        )

        assert_refused(response, 400, "invalid_characters")

    async def test_a_nul_in_a_member_value_is_400(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        add = {"op": "add", "path": "members", "value": [{"value": "usr_\u0000"}]}
        content = json.dumps({"schemas": [PATCH_SCHEMA], "Operations": [add]}).encode()

        response = await identity.patch(
            "/scim2/Groups/ops",
            content=content,
            headers={**admin, "content-type": "application/scim+json"},
        )

        assert_refused(response, 400, "invalid_characters")

    async def test_a_nul_in_a_filter_is_400(
        self, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await identity.get(
            "/scim2/Users", params={"filter": 'userName eq "a\x00"'}, headers=admin
        )

        assert_refused(response, 400, "invalid_characters")


class TestAdminCursor:
    @pytest.mark.parametrize("text", ["cli\u0000x", "cli\ud800"], ids=["nul", "surrogate"])
    async def test_a_cursor_cannot_carry_bad_text(
        self, identity: httpx.AsyncClient, admin: dict[str, str], text: str
    ) -> None:
        raw = json.dumps(["2030-01-01T00:00:00+00:00", text]).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")

        for path in ("/v1/identity/clients", "/v1/identity/users"):
            response = await identity.get(path, params={"cursor": cursor}, headers=admin)
            assert_refused(response, 422, "invalid_cursor")


class TestScimReadsNoBodyBeforeAuthentication:
    @pytest.mark.parametrize("roles", [None, ("customer",)], ids=["anonymous", "customer"])
    async def test_an_unauthorized_scim_write_is_refused_unread(
        self, identity_platform: Platform, identity: httpx.AsyncClient, roles: Any
    ) -> None:
        from tests.ledger.test_hostile_input import MIB, CountingBody

        body = CountingBody(MIB // 2)
        headers = {"content-type": "application/scim+json"}
        if roles is not None:
            headers |= a.bearer(identity_platform, "usr_someone", roles)
        response = await identity.post("/scim2/Users", content=body, headers=headers)
        assert response.status_code == (401 if roles is None else 403), response.text
        assert body.pulled_bytes == 0
