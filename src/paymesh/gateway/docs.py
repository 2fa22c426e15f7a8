"""API documentation that works offline, and what the gateway adds to the OpenAPI document.

`install_docs` serves Swagger UI (`/docs`) and ReDoc (`/redoc`) from the copies of their
dist files that the `fastapi-offline` package ships (docs/decisions.md, "API docs served
offline"): no CDN and no Google Fonts, so the pages work on a machine without internet.
The pages hold no inline script either, so they are served under a Content-Security-Policy
that allows scripts from this origin only. Assets live under a digest of their bytes
(`/docs/assets/<digest>/swagger-ui-bundle.js`) and are cached for a year; an upgrade
changes the digest, so a browser never runs a stale copy.

`decorate_openapi` writes into the merged document what the gateway does around every
operation: the rate-limit headers it sets, its 429 `rate_limited` and 503
`upstream_unavailable` refusals, and each operation's security requirement spelled out.
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import html
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, Response

from paymesh.gateway.errors import GatewayError, RateLimited, UpstreamUnavailable
from paymesh.kernel.errors import PROBLEM_MEDIA_TYPE, NotFound
from paymesh.kernel.openapi import HTTP_METHODS, PROBLEM_REF, SCHEMAS, kernel_schemas

# --- documentation pages -------------------------------------------------------------------

ASSET_PACKAGE = "fastapi_offline"
"""Ships Swagger UI's `swagger-ui-bundle.js` and `swagger-ui.css`, ReDoc's
`redoc.standalone.js` and FastAPI's favicon in its `static/` folder."""
JAVASCRIPT = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"
VENDOR_ASSETS = {
    "swagger-ui-bundle.js": JAVASCRIPT,
    "swagger-ui.css": CSS,
    "redoc.standalone.js": JAVASCRIPT,
    "favicon.png": "image/png",
}
# Read from the page rather than written into it, so that the page needs no inline script.
SWAGGER_INIT = """\
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    displayRequestDuration: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
"""
PAGE_CSS = "body { margin: 0; padding: 0; }\n"
IMMUTABLE = "public, max-age=31536000, immutable"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        # Swagger UI and ReDoc (styled-components) set styles from script.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        # ReDoc's search index runs in a worker started from a blob.
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


class Asset:
    """One file the pages load, kept in memory (about 3 MB in all)."""

    def __init__(self, name: str, media_type: str, content: bytes) -> None:
        self.name = name
        self.media_type = media_type
        self.content = content
        self.digest = hashlib.sha256(content).hexdigest()[:16]

    @property
    def compressible(self) -> bool:
        """Text worth compressing: a PNG is compressed already, a tiny file would grow."""
        return self.media_type.startswith("text/") and len(self.content) >= 1024

    @functools.cached_property
    def gzipped(self) -> bytes:
        """The bundles shrink to under a third; compressed once, on first use."""
        return gzip.compress(self.content, compresslevel=9, mtime=0)


@functools.cache
def assets() -> dict[str, Asset]:
    """Every asset by name: the vendored dist files, then Paymesh's own two."""
    static = resources.files(ASSET_PACKAGE).joinpath("static")
    found = {
        name: Asset(name, media_type, static.joinpath(name).read_bytes())
        for name, media_type in VENDOR_ASSETS.items()
    }
    found["swagger-init.js"] = Asset("swagger-init.js", JAVASCRIPT, SWAGGER_INIT.encode())
    found["docs.css"] = Asset("docs.css", CSS, PAGE_CSS.encode())
    return found


def install_docs(
    app: FastAPI,
    *,
    openapi_url: str = "/openapi.json",
    title: str,
    docs_url: str = "/docs",
    redoc_url: str = "/redoc",
    assets_url: str | None = None,
) -> None:
    """Serve Swagger UI at `docs_url`, ReDoc at `redoc_url` and the files both load under
    `assets_url` (default `{docs_url}/assets`), all outside the OpenAPI document. URLs in the
    pages are prefixed with the request's ASGI `root_path`."""
    assets_path = assets_url or f"{docs_url.rstrip('/')}/assets"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(
            swagger_ui_html(f"{title} - Swagger UI", root + openapi_url, root + assets_path)
        )

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(redoc_html(f"{title} - ReDoc", root + openapi_url, root + assets_path))

    @app.get(assets_path + "/{digest}/{name}", include_in_schema=False)
    async def asset(request: Request, digest: str, name: str) -> Response:
        found = assets().get(name)
        if found is None:
            raise NotFound(f"No documentation asset is named {name!r}.")
        return asset_response(found, digest=digest, request=request)


def asset_url(assets_url: str, name: str) -> str:
    return f"{assets_url}/{assets()[name].digest}/{name}"


def swagger_ui_html(title: str, openapi_url: str, assets_url: str) -> str:
    def url(name: str) -> str:
        return html.escape(asset_url(assets_url, name))

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="icon" type="image/png" href="{url("favicon.png")}">
<link rel="stylesheet" href="{url("swagger-ui.css")}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{html.escape(openapi_url)}"></div>
<script src="{url("swagger-ui-bundle.js")}"></script>
<script src="{url("swagger-init.js")}"></script>
</body>
</html>
"""


def redoc_html(title: str, openapi_url: str, assets_url: str) -> str:
    """ReDoc's standalone bundle renders every `<redoc spec-url>` element by itself. No
    font link: ReDoc falls back to the system's sans-serif and monospace fonts."""

    def url(name: str) -> str:
        return html.escape(asset_url(assets_url, name))

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="icon" type="image/png" href="{url("favicon.png")}">
<link rel="stylesheet" href="{url("docs.css")}">
</head>
<body>
<redoc spec-url="{html.escape(openapi_url)}" expand-responses="200,201"></redoc>
<script src="{url("redoc.standalone.js")}"></script>
</body>
</html>
"""


def _page(content: str) -> HTMLResponse:
    return HTMLResponse(
        content,
        headers={
            "cache-control": "no-cache",
            "content-security-policy": CONTENT_SECURITY_POLICY,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
        },
    )


def asset_response(asset: Asset, *, digest: str, request: Request) -> Response:
    """`asset`, cached for a year when `digest` is its own. A page older than the running
    version asks for another digest: it gets today's file, revalidated on every use."""
    gzipped = asset.compressible and _accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = f'"{asset.digest}-gzip"' if gzipped else f'"{asset.digest}"'
    headers = {
        "cache-control": IMMUTABLE if digest == asset.digest else "no-cache",
        "etag": etag,
        "vary": "accept-encoding",
        "x-content-type-options": "nosniff",
    }
    if etag in _entity_tags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["content-encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.content, media_type=asset.media_type, headers=headers)


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.lower().split(","):
        coding, _, parameters = item.partition(";")
        if coding.strip() in ("gzip", "*"):
            weight = parameters.strip().removeprefix("q=").strip()
            return weight == "" or _positive(weight)
    return False


def _positive(weight: str) -> bool:
    try:
        return float(weight) > 0
    except ValueError:
        return False


def _entity_tags(if_none_match: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in if_none_match.split(",") if tag.strip()}


# --- OpenAPI decoration --------------------------------------------------------------------

HEADERS = "#/components/headers/"
RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Limit": {
        "description": "Requests allowed in the current window.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Remaining": {
        "description": "Requests remaining in the current window.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the current window resets.",
        "schema": {"type": "integer", "minimum": 0},
    },
}
RETRY_AFTER: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "Seconds to wait before sending the request again.",
        "schema": {"type": "integer", "minimum": 0},
    },
}


SCIM_MEDIA_TYPE = "application/scim+json"
SCIM_ERROR_REF = "#/components/schemas/ScimError"


def decorate_openapi(document: Mapping[str, Any], *, rate_limited: bool = True) -> dict[str, Any]:
    """A copy of the merged OpenAPI 3.1 `document` saying what the gateway does around
    every operation: `RateLimit-*` headers on every response and a 429 `rate_limited` with
    `Retry-After` (when `rate_limited`), a 503 `upstream_unavailable`, and an explicit
    `security` (an operation's own; else the document's; else `[]`, public). Refusals are
    problem documents (the `Problem` schema); an operation that already declares the
    status keeps its content and description, and gains the gateway's code. Idempotent."""
    decorated = copy.deepcopy(dict(document))
    components: dict[str, Any] = decorated.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    problem = PROBLEM_REF.removeprefix(SCHEMAS)
    if problem not in schemas:  # a document the kernel did not complete
        schemas[problem] = kernel_schemas()[problem]
    if rate_limited:
        headers: dict[str, Any] = components.setdefault("headers", {})
        for name, header in (RATE_LIMIT_HEADERS | RETRY_AFTER).items():
            headers.setdefault(name, copy.deepcopy(header))
    security = decorated.get("security")
    scim_error = "ScimError" in schemas
    for path, operation in _operations(decorated.get("paths", {})):
        # The gateway refuses SCIM requests with SCIM error documents (RFC 7644 3.12).
        media = (
            (SCIM_MEDIA_TYPE, SCIM_ERROR_REF) if scim_error and path.startswith("/scim2") else None
        )
        if "security" not in operation:
            operation["security"] = copy.deepcopy(security) if security is not None else []
        responses: dict[str, Any] = operation.setdefault("responses", {})
        if rate_limited:
            _declare_refusal(
                responses, RateLimited, "`Retry-After` says how many seconds to wait.", media
            )
            _add_headers(responses[str(RateLimited.status)], RETRY_AFTER)
        _declare_refusal(responses, UpstreamUnavailable, "Try again later.", media)
        if rate_limited:
            for response in responses.values():
                _add_headers(response, RATE_LIMIT_HEADERS)
        operation["responses"] = dict(sorted(responses.items()))
    if rate_limited:
        for response in components.get("responses", {}).values():
            _add_headers(response, RATE_LIMIT_HEADERS)
    return decorated


def _operations(paths: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in paths.items():
        for method, operation in item.items():
            if method in HTTP_METHODS and isinstance(operation, dict):
                yield path, operation


def _declare_refusal(
    responses: dict[str, Any],
    error: type[GatewayError],
    hint: str,
    media: tuple[str, str] | None = None,
) -> None:
    """The response at `error.status` may be a problem document with `error.code` (or
    the `media` (type, schema reference) given, e.g. SCIM's error document)."""
    response: dict[str, Any] = responses.setdefault(str(error.status), {})
    if "$ref" in response:  # a shared response: its owner declares what it holds
        return
    content: dict[str, Any] = response.setdefault("content", {})
    media_type, schema = media or (PROBLEM_MEDIA_TYPE, PROBLEM_REF)
    content.setdefault(media_type, {"schema": {"$ref": schema}})
    codes = set(response.get("x-problem-codes", ()))
    if error.code in codes:
        return
    response["x-problem-codes"] = sorted(codes | {error.code})
    if response.get("description"):
        condition = error.title[:1].lower() + error.title[1:]
        response["description"] += f" From the gateway: `{error.code}` ({condition}). {hint}"
    else:
        response["description"] = (
            f"{error.title}: a problem document; `code` is `{error.code}`. {hint}"
        )


def _add_headers(response: dict[str, Any], headers: Mapping[str, Any]) -> None:
    """Reference each of `headers` from `response`, unless it declares one of that name
    (header names are case-insensitive) or is itself a reference."""
    if "$ref" in response:
        return
    declared: dict[str, Any] = response.setdefault("headers", {})
    present = {name.lower() for name in declared}
    for name in headers:
        if name.lower() not in present:
            declared[name] = {"$ref": HEADERS + name}
