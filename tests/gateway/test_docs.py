"""The API docs work without internet, and the OpenAPI document says what the gateway does.

The pages are fetched over HTTP (an ASGI transport) from a small app with `install_docs`;
the decoration is checked on the merged document of every service, built without a
database, and validated against the OpenAPI 3.1 meta-schema.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI

from paymesh.gateway.docs import decorate_openapi, install_docs
from paymesh.kernel.config import Settings
from paymesh.kernel.errors import install_error_handlers
from paymesh.platform import Platform

MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
MINIMUM_SIZES = {
    "swagger-ui-bundle.js": 500_000,
    "swagger-ui.css": 50_000,
    "redoc.standalone.js": 500_000,
    "favicon.png": 1_000,
    "swagger-init.js": 200,
    "docs.css": 10,
}
"""Bytes each asset has at least: a stub or an error page is much smaller."""
URL = re.compile(r"(?i)\b(?:https?:)?//[a-z0-9.-]+")
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


class Page(HTMLParser):
    """The elements of an HTML page that load something, and its inline scripts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []
        self.elements: dict[str, dict[str, str | None]] = {}
        self.inline_scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.elements.setdefault(tag, attributes)
        for name in ("src", "href"):
            value = attributes.get(name)
            if value is not None:
                self.loads.append((tag, value))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def docs_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    install_error_handlers(app)
    install_docs(app, title="Paymesh API")
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=docs_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def page(client: httpx.AsyncClient, path: str) -> Page:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return Page(response.text)


async def assert_loads_only_served_local_assets(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert URL.findall(response.text) == []  # no http://, https:// or //host anywhere
    loads = Page(response.text).loads
    assert {tag for tag, _url in loads} >= {"script", "link"}
    for tag, url in loads:
        assert url.startswith("/docs/assets/"), (tag, url)
        asset = await client.get(url)
        name = url.rsplit("/", 1)[1]
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(MEDIA_TYPES[Path(name).suffix]), url
        assert len(asset.content) >= MINIMUM_SIZES[name], url


class TestSwaggerUi:
    async def test_loads_only_local_assets_and_each_is_served(
        self, client: httpx.AsyncClient
    ) -> None:
        await assert_loads_only_served_local_assets(client, "/docs")

    async def test_loads_swagger_ui_and_reads_the_openapi_document(
        self, client: httpx.AsyncClient
    ) -> None:
        swagger = await page(client, "/docs")

        assets = [url.rsplit("/", 1)[1] for _tag, url in swagger.loads]
        assert {"swagger-ui-bundle.js", "swagger-ui.css", "swagger-init.js"} <= set(assets)
        assert swagger.elements["div"]["data-openapi-url"] == "/openapi.json"
        init = await client.get(next(url for _tag, url in swagger.loads if "init" in url))
        assert "SwaggerUIBundle(" in init.text
        assert "dataset.openapiUrl" in init.text
        assert "validatorUrl: null" in init.text  # no badge from validator.swagger.io

    async def test_has_no_inline_script_and_allows_only_its_own_origin(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/docs")

        assert Page(response.text).inline_scripts == []
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy
        assert "img-src 'self' data:;" in policy  # ReDoc's footer logo is not fetched
        assert "connect-src 'self';" in policy
        assert URL.findall(policy) == []
        assert response.headers["cache-control"] == "no-cache"

    async def test_urls_carry_the_root_path(self) -> None:
        transport = httpx.ASGITransport(app=docs_app(), root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            swagger = await page(http, "/api/docs")
            assert swagger.elements["div"]["data-openapi-url"] == "/api/openapi.json"
            for _tag, url in swagger.loads:
                assert url.startswith("/api/docs/assets/"), url
                assert (await http.get(url)).status_code == 200, url


class TestReDoc:
    async def test_loads_only_local_assets_and_each_is_served(
        self, client: httpx.AsyncClient
    ) -> None:
        await assert_loads_only_served_local_assets(client, "/redoc")

    async def test_renders_the_openapi_document_without_web_fonts(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/redoc")
        redoc = Page(response.text)

        assert redoc.elements["redoc"]["spec-url"] == "/openapi.json"
        assert any(url.endswith("/redoc.standalone.js") for _tag, url in redoc.loads)
        assert "fonts.googleapis" not in response.text
        assert "@import" not in response.text
        assert redoc.inline_scripts == []
        assert "style" not in redoc.elements  # the body reset is a stylesheet of ours
        assert "script-src 'self';" in response.headers["content-security-policy"]


class TestAssets:
    async def asset_url(self, client: httpx.AsyncClient, name: str) -> str:
        loads = (await page(client, "/docs")).loads + (await page(client, "/redoc")).loads
        return next(url for _tag, url in loads if url.endswith("/" + name))

    async def test_versioned_asset_is_cached_for_a_year(self, client: httpx.AsyncClient) -> None:
        response = await client.get(await self.asset_url(client, "swagger-ui-bundle.js"))

        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"

    async def test_another_digest_gets_the_current_file_revalidated(
        self, client: httpx.AsyncClient
    ) -> None:
        current = await client.get(await self.asset_url(client, "swagger-ui.css"))
        stale = await client.get("/docs/assets/0123456789abcdef/swagger-ui.css")

        assert stale.status_code == 200
        assert stale.content == current.content
        assert stale.headers["cache-control"] == "no-cache"

    async def test_text_is_gzipped_when_the_client_accepts_it(
        self, client: httpx.AsyncClient
    ) -> None:
        url = await self.asset_url(client, "redoc.standalone.js")
        plain = await client.get(url, headers={"accept-encoding": "identity"})
        compressed = await client.get(url, headers={"accept-encoding": "br, gzip;q=0.8"})

        assert "content-encoding" not in plain.headers
        assert compressed.headers["content-encoding"] == "gzip"
        assert int(compressed.headers["content-length"]) < len(plain.content) / 2
        assert compressed.content == plain.content  # httpx decodes it
        assert compressed.headers["etag"] != plain.headers["etag"]
        assert compressed.headers["vary"] == "accept-encoding"

    async def test_gzip_refused_with_q_0_is_not_sent(self, client: httpx.AsyncClient) -> None:
        url = await self.asset_url(client, "swagger-ui.css")
        response = await client.get(url, headers={"accept-encoding": "gzip;q=0"})

        assert "content-encoding" not in response.headers

    async def test_unchanged_asset_answers_304(self, client: httpx.AsyncClient) -> None:
        url = await self.asset_url(client, "swagger-ui.css")
        first = await client.get(url)
        again = await client.get(url, headers={"if-none-match": first.headers["etag"]})

        assert again.status_code == 304
        assert again.content == b""

    async def test_unknown_asset_is_a_problem_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/docs/assets/0123456789abcdef/secrets.txt")

        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"

    async def test_pages_and_assets_stay_out_of_the_openapi_document(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()

        assert document.get("paths", {}) == {}


def refusal_media_type(path: str) -> str:
    """SCIM's paths are refused with SCIM error documents, the others with problems."""
    return "application/scim+json" if path.startswith("/scim2") else "application/problem+json"


def refusal_schema(path: str) -> str:
    name = "ScimError" if path.startswith("/scim2") else "Problem"
    return f"#/components/schemas/{name}"


# --- decorate_openapi ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every service's merged document, as `/openapi.json` serves it (no database needed)."""
    settings = Settings(
        _env_file=None, env="test", data_dir=tmp_path_factory.mktemp("var"), access_log=False
    )
    # The merged document before the gateway decorates it (Platform.openapi() serves both).
    return copy.deepcopy(Platform(settings)._merged_openapi())


@pytest.fixture(scope="module")
def decorated(merged: dict[str, Any]) -> dict[str, Any]:
    return decorate_openapi(merged)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def resolve(document: dict[str, Any], reference: str) -> Any:
    assert reference.startswith("#/"), reference
    node: Any = document
    for part in reference[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class TestDecorateOpenapi:
    def test_is_valid_openapi_3_1_and_every_reference_resolves(
        self, decorated: dict[str, Any]
    ) -> None:
        schemathesis.openapi.from_dict(decorated).validate()  # the OAS 3.1 meta-schema
        found = references(decorated)
        assert any(ref.startswith("#/components/headers/") for ref in found)
        for reference in found:
            resolve(decorated, reference)

    def test_every_response_carries_the_rate_limit_headers(self, decorated: dict[str, Any]) -> None:
        headers = decorated["components"]["headers"]
        for name in RATE_LIMIT_HEADERS:
            assert headers[name]["schema"]["type"] == "integer"
            assert headers[name]["description"]
        assert "window resets" in headers["RateLimit-Reset"]["description"]
        assert len(operations(decorated)) > 40
        for method, path, operation in operations(decorated):
            for status, response in operation["responses"].items():
                for name in RATE_LIMIT_HEADERS:
                    assert response["headers"][name] == {"$ref": f"#/components/headers/{name}"}, (
                        method,
                        path,
                        status,
                    )

    def test_every_operation_may_be_refused_429_with_retry_after(
        self, decorated: dict[str, Any]
    ) -> None:
        for method, path, operation in operations(decorated):
            refusal = operation["responses"]["429"]
            assert refusal["content"][refusal_media_type(path)]["schema"] == {
                "$ref": refusal_schema(path)
            }, (method, path)
            assert "rate_limited" in refusal["x-problem-codes"]
            assert refusal["headers"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}
        assert decorated["components"]["headers"]["Retry-After"]["schema"]["type"] == "integer"

    def test_every_operation_may_be_refused_503_upstream_unavailable(
        self, decorated: dict[str, Any]
    ) -> None:
        for method, path, operation in operations(decorated):
            refusal = operation["responses"]["503"]
            assert refusal["content"][refusal_media_type(path)]["schema"] == {
                "$ref": refusal_schema(path)
            }, (method, path)
            assert "upstream_unavailable" in refusal["x-problem-codes"]
            assert "upstream_unavailable" in refusal["description"]

    def test_a_declared_response_keeps_its_content_and_gains_the_code(
        self, merged: dict[str, Any], decorated: dict[str, Any]
    ) -> None:
        before = merged["paths"]["/oauth2/authorize"]["post"]["responses"]["429"]
        after = decorated["paths"]["/oauth2/authorize"]["post"]["responses"]["429"]

        assert after["content"]["text/html"] == before["content"]["text/html"]
        assert "application/problem+json" in after["content"]
        assert after["description"].startswith(before["description"])
        assert "rate_limited" in after["x-problem-codes"]
        assert set(before.get("x-problem-codes", ())) <= set(after["x-problem-codes"])

    def test_secured_operations_keep_their_security_and_public_ones_say_so(
        self, merged: dict[str, Any], decorated: dict[str, Any]
    ) -> None:
        secured = 0
        for method, path, operation in operations(merged):
            shown = decorated["paths"][path][method]["security"]
            if "security" in operation:
                assert shown == operation["security"], (method, path)
                secured += bool(shown)
            else:
                assert shown == [], (method, path)  # public, and now explicitly so
        assert secured > 30
        paths = decorated["paths"]
        assert paths["/v1/ledger/transfers"]["post"]["security"] == [{"bearer": []}]
        assert paths["/oauth2/token"]["post"]["security"] == []
        assert paths["/scim2/ServiceProviderConfig"]["get"]["security"] == []

    def test_operations_inherit_a_document_wide_requirement(self) -> None:
        document = {
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "security": [{"bearer": []}],
            "paths": {
                "/a": {"get": {"responses": {"200": {"description": "ok"}}}},
                "/b": {"get": {"security": [], "responses": {"200": {"description": "ok"}}}},
            },
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        }

        result = decorate_openapi(document)

        assert result["paths"]["/a"]["get"]["security"] == [{"bearer": []}]
        assert result["paths"]["/b"]["get"]["security"] == []

    def test_reuses_the_problem_schema(
        self, merged: dict[str, Any], decorated: dict[str, Any]
    ) -> None:
        assert set(decorated["components"]["schemas"]) == set(merged["components"]["schemas"])
        assert (
            decorated["components"]["schemas"]["Problem"]
            == (merged["components"]["schemas"]["Problem"])
        )

    def test_leaves_its_input_alone_and_is_idempotent(
        self, merged: dict[str, Any], decorated: dict[str, Any]
    ) -> None:
        assert "headers" not in merged["components"]
        assert "429" not in merged["paths"]["/v1/ledger/transfers"]["post"]["responses"]
        assert decorate_openapi(decorated) == decorated

    def test_without_rate_limits_only_503_is_added(self, merged: dict[str, Any]) -> None:
        result = decorate_openapi(merged, rate_limited=False)

        assert "headers" not in result["components"]
        for method, path, operation in operations(result):
            assert "upstream_unavailable" in operation["responses"]["503"]["x-problem-codes"]
            limited = operation["responses"].get("429", {})
            assert "rate_limited" not in limited.get("x-problem-codes", ()), (method, path)
            for response in operation["responses"].values():
                assert "RateLimit-Limit" not in response.get("headers", {}), (method, path)
        schemathesis.openapi.from_dict(result).validate()

    def test_a_plain_fastapi_document_gets_the_problem_schema(self) -> None:
        app = FastAPI()

        @app.get("/ping")
        async def ping() -> dict[str, str]:
            return {"status": "ok"}

        result = decorate_openapi(app.openapi())

        assert "Problem" in result["components"]["schemas"]
        assert set(result["paths"]["/ping"]["get"]["responses"]) == {"200", "429", "503"}
        schemathesis.openapi.from_dict(result).validate()
        for reference in references(result):
            resolve(result, reference)
