"""The merged OpenAPI document says what the server does, and a 405 names every method.

Everything goes through real HTTP (the platform behind an ASGI transport), on the
database backend of the pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.conftest import http_client


@pytest.fixture
async def platform(make_platform: Callable[..., Any]) -> Platform:
    built: Platform = await make_platform(["identity", "ledger"], run_workers=False)
    return built


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(platform) as http:
        yield http


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class TestMethodNotAllowed:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/v1/ledger/transfers", {"GET", "POST"}),
            ("/oauth2/userinfo", {"GET", "POST"}),
            ("/oauth2/logout", {"GET", "POST"}),
            ("/v1/identity/users/me", {"GET", "PATCH"}),
            ("/v1/identity/users/me/totp", {"POST", "DELETE"}),
            ("/v1/identity/users", {"GET", "POST"}),
            ("/v1/ledger/accounts/acc_1", {"GET"}),
        ],
    )
    async def test_allow_lists_every_method_of_the_path(
        self, client: httpx.AsyncClient, platform: Platform, path: str, expected: set[str]
    ) -> None:
        # With a token: the gateway lets it through, and the service names its methods.
        token = platform.tokens.issue("user-405", roles=["customer"])
        client.headers["authorization"] = f"Bearer {token}"
        response = await client.put(path, content=b"{}")

        assert response.status_code == 405
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "method_not_allowed"
        allowed = {method.strip() for method in response.headers["allow"].split(",")}
        assert allowed == expected
        # and Allow tells the truth: every other method is refused the same way
        for method in METHODS:
            answer = await client.request(method, path, content=b"{}")
            assert (answer.status_code == 405) is (method not in allowed), (method, answer.text)


HTML_OPERATIONS = {
    ("get", "/oauth2/authorize"),
    ("post", "/oauth2/authorize"),
    ("get", "/oauth2/logout"),
    ("post", "/oauth2/logout"),
}
"""The provider's pages: their answers, errors included, are HTML."""
SCIM_PATHS = (
    "/scim2/ServiceProviderConfig",
    "/scim2/ResourceTypes",
    "/scim2/Schemas",
    "/scim2/Users",
    "/scim2/Users/{id}",
    "/scim2/Groups",
    "/scim2/Groups/{id}",
)
PROBLEM_SCHEMAS = ("#/components/schemas/Problem", "#/components/schemas/ValidationProblem")
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def errors(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        status: response for status, response in operation["responses"].items() if status[0] in "45"
    }


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


class TestOpenApiDocument:
    async def test_is_valid_openapi_3_1(self, document: dict[str, Any]) -> None:
        import schemathesis

        assert document["openapi"].startswith("3.1")
        schemathesis.openapi.from_dict(document).validate()  # the OAS 3.1 meta-schema
        components = document["components"]
        for reference in references(document):
            kind, _, name = reference.removeprefix("#/components/").partition("/")
            assert reference.startswith("#/components/"), reference
            assert kind in ("schemas", "headers"), reference  # the gateway's RateLimit-*
            assert name in components[kind], f"dangling {reference}"
        ids = [operation["operationId"] for _method, _path, operation in operations(document)]
        assert len(ids) == len(set(ids)), "operationIds must be unique"

    async def test_every_error_is_a_problem_document_or_declared_otherwise(
        self, document: dict[str, Any]
    ) -> None:
        assert "HTTPValidationError" not in document["components"]["schemas"]
        wrong = []
        for method, path, operation in operations(document):
            for status, response in errors(operation).items():
                content = response.get("content") or {}
                problem = content.get("application/problem+json")
                if problem is not None and problem["schema"]["$ref"] not in PROBLEM_SCHEMAS:
                    wrong.append((method, path, status, "problem schema"))
                for media, body in content.items():
                    if media == "application/problem+json":
                        continue
                    allowed = (
                        (media == "text/html" and (method, path) in HTML_OPERATIONS)
                        or (
                            media == "application/scim+json"
                            and path.startswith("/scim2/")
                            and body["schema"]["$ref"].endswith("/ScimError")
                        )
                        or (
                            # RFC 6749 5.2 / RFC 6750 3.1 prescribe this format there.
                            media == "application/json"
                            and path.startswith("/oauth2/")
                            and body["schema"]["$ref"].endswith("/OAuth2Error")
                        )
                    )
                    if not allowed:
                        wrong.append((method, path, status, media))
                if not content:
                    wrong.append((method, path, status, "no content"))
        assert wrong == []

    async def test_validation_errors_are_validation_problems(
        self, document: dict[str, Any]
    ) -> None:
        for method, path, operation in operations(document):
            if path.startswith("/scim2/") or path in ("/health", "/ready"):
                continue
            response = operation["responses"].get("422")
            assert response is not None, (method, path)
            assert response["content"]["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/ValidationProblem"
            }
            assert "validation_failed" in response["x-problem-codes"]

    async def test_authenticated_operations_declare_401_and_403(
        self, document: dict[str, Any]
    ) -> None:
        secured = [
            (method, path, operation)
            for method, path, operation in operations(document)
            if operation.get("security")
        ]
        assert len(secured) > 30
        for method, path, operation in secured:
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            for requirement in operation["security"]:
                assert set(requirement) <= set(document["components"]["securitySchemes"])
        by_path = {(method, path) for method, path, _operation in secured}
        for expected in [
            ("post", "/v1/ledger/transfers"),
            ("get", "/v1/ledger/transfers"),
            ("get", "/v1/identity/users/me"),
            ("post", "/v1/identity/clients"),
            ("get", "/oauth2/userinfo"),
            ("get", "/scim2/Users"),
        ]:
            assert expected in by_path

    async def test_bodies_declare_413_and_json_bodies_400_malformed_json(
        self, document: dict[str, Any]
    ) -> None:
        with_body = [
            (method, path, operation)
            for method, path, operation in operations(document)
            if "requestBody" in operation
        ]
        assert len(with_body) > 20
        for method, path, operation in with_body:
            too_large = operation["responses"].get("413")
            assert too_large is not None, (method, path)
            assert "payload_too_large" in too_large["x-problem-codes"]
            if any(media.endswith("json") for media in operation["requestBody"]["content"]):
                malformed = operation["responses"]["400"]
                assert "malformed_json" in malformed["x-problem-codes"], (method, path)
        posts = [
            operation
            for method, path, operation in with_body
            if method == "post" and path.startswith("/v1/")
        ]
        for operation in posts:
            names = [parameter["name"] for parameter in operation.get("parameters", ())]
            assert "Idempotency-Key" in names

    async def test_html_pages_login_post_and_scim_are_documented(
        self, document: dict[str, Any]
    ) -> None:
        paths = document["paths"]
        for method, path in HTML_OPERATIONS:
            assert "text/html" in paths[path][method]["responses"]["200"]["content"]
        login = paths["/oauth2/authorize"]["post"]
        assert "application/x-www-form-urlencoded" in login["requestBody"]["content"]
        assert "text/html" in login["responses"]["429"]["content"]
        assert "text/html" in login["responses"]["401"]["content"]
        token = paths["/oauth2/token"]["post"]
        assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
        for path in SCIM_PATHS:
            assert "get" in paths[path], path
        assert paths["/scim2/Users"]["post"]["requestBody"]["content"]["application/scim+json"]
        assert not paths["/scim2/ServiceProviderConfig"]["get"].get("security")
        assert paths["/scim2/Users/{id}"]["patch"]["requestBody"]["content"][
            "application/scim+json"
        ]["schema"] == {"$ref": "#/components/schemas/ScimPatchOp"}


def documented(document: dict[str, Any], method: str, path: str, response: httpx.Response) -> None:
    """`response` is one the document declares for the operation: its status, and its
    media type at that status."""
    declared = document["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in declared, f"{method.upper()} {path}: {status} not declared"
    media = response.headers.get("content-type", "").split(";")[0]
    if media and response.content:  # a 204 may name a type, but has no body
        assert media in declared[status].get("content", {}), (method, path, status, media)
    if media == "application/problem+json":
        assert response.json()["code"] in declared[status]["x-problem-codes"], (
            method,
            path,
            status,
            response.json()["code"],
        )


class TestErrorsAreDeclaredWhereTheyOccur:
    async def test_kernel_refusals(
        self, client: httpx.AsyncClient, platform: Platform, document: dict[str, Any]
    ) -> None:
        customer = {"authorization": "Bearer " + platform.tokens.issue("c", roles=["customer"])}
        finance = {"authorization": "Bearer " + platform.tokens.issue("f", roles=["finance"])}
        json_type = {"content-type": "application/json"}
        cases = [
            ("get", "/v1/ledger/accounts", await client.get("/v1/ledger/accounts")),
            (
                "get",
                "/v1/ledger/accounts",
                await client.get("/v1/ledger/accounts", headers=customer),
            ),
            (
                "post",
                "/v1/ledger/transfers",
                await client.post(
                    "/v1/ledger/transfers", content=b'{"id": ', headers=finance | json_type
                ),
            ),
            (
                "post",
                "/v1/ledger/accounts",
                await client.post("/v1/ledger/accounts", json={}, headers=finance),
            ),
            (
                "get",
                "/v1/ledger/accounts/{account_id}",
                await client.get("/v1/ledger/accounts/nope", headers=finance),
            ),
            (
                "post",
                "/v1/identity/users",
                await client.post(
                    "/v1/identity/users",
                    content=b"x" * (4 * 1024 * 1024),
                    headers=json_type,
                ),
            ),
            (
                "post",
                "/v1/identity/users",
                await client.post(
                    "/v1/identity/users", json={"username": "a"}, headers={"idempotency-key": ""}
                ),
            ),
            ("get", "/v1/identity/users/me", await client.get("/v1/identity/users/me")),
        ]
        for method, path, response in cases:
            assert response.status_code >= 400, (method, path, response.text)
            documented(document, method, path, response)

    async def test_identity_answers(
        self, client: httpx.AsyncClient, document: dict[str, Any]
    ) -> None:
        cases = [
            ("post", "/oauth2/token", await client.post("/oauth2/token", data={})),
            (
                "post",
                "/oauth2/token",
                await client.post(
                    "/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=("nobody", "wrong"),
                ),
            ),
            ("get", "/oauth2/userinfo", await client.get("/oauth2/userinfo")),
            (
                "get",
                "/oauth2/authorize",
                await client.get("/oauth2/authorize", params={"client_id": "nope"}),
            ),
            (
                "post",
                "/oauth2/authorize",
                await client.post("/oauth2/authorize", data={"action": "login"}),
            ),
            ("get", "/oauth2/logout", await client.get("/oauth2/logout")),
            (
                # Authlib cannot quote a control character in its error: a 400 page, no 500
                "get",
                "/oauth2/authorize",
                await client.get(
                    "/oauth2/authorize", params={"response_type": "\x0c@", "client_id": "x"}
                ),
            ),
            (
                # a CSRF token that is not ASCII is a wrong one, not a 500
                "post",
                "/oauth2/logout",
                await client.post(
                    "/oauth2/logout",
                    data={"csrf_token": "\u00e9t\u00e9"},
                    headers={"cookie": "paymesh_csrf=abc"},
                ),
            ),
            (
                "post",
                "/oauth2/authorize",
                await client.post(
                    "/oauth2/authorize",
                    data={"csrf_token": "\u00e9t\u00e9", "action": "login"},
                    headers={"cookie": "paymesh_csrf=abc"},
                ),
            ),
            (
                # a bad token with an Idempotency-Key is refused before the endpoint
                "post",
                "/oauth2/userinfo",
                await client.post(
                    "/oauth2/userinfo",
                    headers={"authorization": "Bearer nope", "idempotency-key": "k1"},
                ),
            ),
            ("get", "/scim2/Users", await client.get("/scim2/Users")),
            (
                "get",
                "/scim2/ServiceProviderConfig",
                await client.get("/scim2/ServiceProviderConfig"),
            ),
        ]
        for method, path, response in cases:
            documented(document, method, path, response)

    async def test_scim_answers(
        self, client: httpx.AsyncClient, platform: Platform, document: dict[str, Any]
    ) -> None:
        admin = {"authorization": "Bearer " + platform.tokens.issue("a", roles=["admin"])}
        scim = admin | {"content-type": "application/scim+json"}
        user = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "zed",
            "password": "a long enough password 1",
        }
        created = await client.post("/scim2/Users", json=user, headers=scim)
        user_id = created.json()["id"]
        patch = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
        }
        cases = [
            ("post", "/scim2/Users", created),
            ("post", "/scim2/Users", await client.post("/scim2/Users", json=user, headers=scim)),
            ("get", "/scim2/Users", await client.get("/scim2/Users", headers=admin)),
            (
                "get",
                "/scim2/Users",
                await client.get("/scim2/Users", params={"filter": "bad filter"}, headers=admin),
            ),
            (
                "patch",
                "/scim2/Groups/{id}",
                await client.patch("/scim2/Groups/auditor", json=patch, headers=scim),
            ),
            (
                "get",
                "/scim2/Schemas/{id}",
                await client.get("/scim2/Schemas/nope", headers=admin),
            ),
            (
                "delete",
                "/scim2/Users/{id}",
                await client.delete(f"/scim2/Users/{user_id}", headers=admin),
            ),
        ]
        assert [response.status_code for _method, _path, response in cases] == [
            201,
            409,
            200,
            400,
            204,
            404,
            204,
        ]
        # A control character in the path comes back encoded, never as a raw header
        # (uvicorn would refuse it and drop the connection).
        unknown = await client.get("/scim2/Users/x%0A", headers=admin)
        assert unknown.status_code == 404
        assert unknown.headers["location"].endswith("/scim2/Users/x%0A")
        for method, path, response in [*cases, ("get", "/scim2/Users/{id}", unknown)]:
            documented(document, method, path, response)
