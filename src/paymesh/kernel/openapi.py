"""Each service's OpenAPI document, completed with what the kernel does to every request.

FastAPI documents what an endpoint declares. The kernel adds behaviour no endpoint
declares: every error is an RFC 9457 problem document (FastAPI's default 422 says
`HTTPValidationError` as `application/json`); a bearer token is checked before the
endpoint runs (401, 403); a JSON body that does not parse is a 400 `malformed_json`; a body
over the limit is a 413 `payload_too_large`; a POST honours `Idempotency-Key`. `complete`
writes these into the document, once, where they apply, so that no route can forget them.
Routes served by an ASGI app FastAPI cannot see into (SCIM) bring their own paths
(`DocumentedRoute`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, Route

from paymesh.kernel.errors import (
    PROBLEM_MEDIA_TYPE,
    FieldError,
    Problem,
    ValidationProblem,
)
from paymesh.kernel.routing import ServiceRoute, honours_idempotency_key

BEARER_SCHEME = "bearer"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
SCHEMAS = "#/components/schemas/"
PROBLEM_REF = SCHEMAS + "Problem"
VALIDATION_PROBLEM_REF = SCHEMAS + "ValidationProblem"
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
AUTHENTICATION_MODULE = "paymesh.kernel.auth"
"""A route whose dependencies come from this module reads the bearer token."""

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: a repeated request with the same key and body gets "
    "the first answer again (header `Idempotent-Replayed: true`); the same key with another "
    "body is a 422 `idempotency_key_reused`. Up to 255 printable ASCII characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}

TITLES: dict[int, str] = {
    400: "The request is malformed",
    401: "No valid bearer token",
    403: "The token does not allow this",
    404: "Not found",
    409: "Conflict with the current state",
    413: "The request body is larger than this endpoint accepts",
    415: "The body is not in a media type this endpoint reads",
    422: "The request is not valid",
}


class DocumentedRoute(Route):
    """A route served by an ASGI app FastAPI cannot describe, with the OpenAPI paths (and
    component schemas) it serves written by hand. Its paths join the service's document."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        paths: Mapping[str, Any],
        schemas: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(path, endpoint=endpoint, include_in_schema=False)
        self.openapi_paths = dict(paths)
        self.openapi_schemas = dict(schemas or {})
        # Longest first: `/Users/{id}` before `/{resource}`.
        self._templates = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "/?$"),
                template,
            )
            for template in sorted(self.openapi_paths, key=len, reverse=True)
        ]
        # FastAPI hands a request to a copy of this route (under the router's prefix), but
        # the endpoint in the request's scope is this one: the metrics ask it.
        with contextlib.suppress(AttributeError):
            endpoint.route_template_for = self.template_for  # type: ignore[attr-defined]

    def template_for(self, path: str) -> str:
        """The documented path template `path` falls under (metrics' `route` label), else
        the route's own pattern."""
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        return self.path


def install_openapi(app: FastAPI, *, decoding: bool = True) -> None:
    """Serve `complete(FastAPI's document)` as `app.openapi()` (and `/openapi.json`).
    `decoding`: the app sits behind the request-decoding layer (every service app)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build(), app.routes, decoding=decoding)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(
    document: dict[str, Any], routes: Sequence[BaseRoute], *, decoding: bool = True
) -> dict[str, Any]:
    """Add the kernel's responses, parameters and security to every operation of
    `document` (FastAPI's, for `routes`), and the paths of `DocumentedRoute`s."""
    paths: dict[str, Any] = document.setdefault("paths", {})
    components: dict[str, Any] = document.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, DocumentedRoute):
            documented = copy.deepcopy(route.openapi_paths)  # completed per document
            by_hand = Kernel(decoding, validation=False, idempotency=False, authentication=False)
            for documented_operation in _operations(documented):
                _complete_operation(documented_operation, by_hand)
            paths.update(documented)
            schemas.update(route.openapi_schemas)
            continue
        if not isinstance(route, APIRoute) or not context.include_in_schema:
            continue
        item = paths.get(context.path_format or "") or {}
        for method in sorted(context.methods or ()):
            operation = item.get(method.lower())
            if operation is not None:
                kernel = Kernel(
                    decoding,
                    validation=True,
                    idempotency=method == "POST"
                    and isinstance(route, ServiceRoute)
                    and honours_idempotency_key(route.path),
                    authentication=_authenticates(route, context),
                )
                _complete_operation(operation, kernel)
    schemas.update(kernel_schemas())
    _drop_unused(schemas, FASTAPI_VALIDATION_SCHEMAS, document)
    if _uses_bearer(paths):
        components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from identity (`/oauth2/token`); development "
            "tokens (`paymesh token`) outside production.",
        }
    return document


def kernel_schemas() -> dict[str, Any]:
    """`Problem`, `ValidationProblem` and `FieldError` as component schemas."""
    found: dict[str, Any] = {}
    for model in (Problem, ValidationProblem, FieldError):
        schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


@dataclass(frozen=True)
class Kernel:
    """What the kernel does around one operation."""

    decoding: bool
    """Behind the request-decoding layer (`kernel/decoding.py`)."""
    validation: bool
    """FastAPI validates the parameters and body (422 `validation_failed`)."""
    idempotency: bool
    """Honours `Idempotency-Key` (a POST of a `ServiceRoute`)."""
    authentication: bool
    """Verifies a bearer token before the endpoint runs."""


def _complete_operation(operation: dict[str, Any], kernel: Kernel) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    codes: dict[int, set[str]] = {}
    for key, response in responses.items():
        if _is_error(key) and _sent_as_problem(response):
            codes.setdefault(int(key), set()).update(response.get("x-problem-codes", ()))
    if kernel.decoding:
        for status, refusals in _decoding_codes(operation.get("requestBody")).items():
            codes.setdefault(status, set()).update(refusals)
    if kernel.validation:
        codes.setdefault(422, set()).add("validation_failed")
    if kernel.idempotency:
        # With an Idempotency-Key, the caller's bearer token (if any) is verified first.
        codes.setdefault(401, set()).add("unauthenticated")
        codes.setdefault(400, set()).add("invalid_idempotency_key")
        codes.setdefault(409, set()).add("idempotency_request_in_progress")
        codes.setdefault(422, set()).add("idempotency_key_reused")
        _add_parameter(operation, IDEMPOTENCY_KEY)
    if kernel.authentication:
        codes.setdefault(401, set()).add("unauthenticated")
        codes.setdefault(403, set()).add("forbidden")
        operation.setdefault("security", [{BEARER_SCHEME: []}])
    for status, status_codes in sorted(codes.items()):
        _declare_problem(responses.setdefault(str(status), {}), status, sorted(status_codes))
    operation["responses"] = dict(sorted(responses.items()))


def _decoding_codes(body: Mapping[str, Any] | None) -> dict[int, set[str]]:
    """The refusals of the request-decoding layer: text that is not UTF-8 or holds NUL
    (path, query, body), and for a body its size, media type and, for JSON, syntax and
    duplicate keys."""
    codes = {400: {"invalid_characters"}}
    if body is not None:
        codes[400] |= {"invalid_content_length"}
        codes[413] = {"payload_too_large"}
        codes[415] = {"unsupported_media_type"}
        if any(media.endswith("json") for media in body.get("content", {})):
            codes[400] |= {"malformed_json", "duplicate_json_key"}
    return codes


def _sent_as_problem(response: dict[str, Any]) -> bool:
    """FastAPI puts an error model under `application/json`; the kernel sends it as
    `application/problem+json`. Other JSON errors (RFC 6749's) stay as declared."""
    content: dict[str, Any] = response.get("content") or {}
    json_schema = (content.get("application/json") or {}).get("schema") or {}
    reference = str(json_schema.get("$ref", "")).removeprefix(SCHEMAS)
    if reference in ("Problem", "ValidationProblem", *FASTAPI_VALIDATION_SCHEMAS):
        del content["application/json"]
        return True
    return PROBLEM_MEDIA_TYPE in content


def _declare_problem(response: dict[str, Any], status: int, codes: list[str]) -> None:
    """The response at `status` may be a problem document with one of `codes`; a response
    the endpoint declared in another media type (an HTML page, RFC 6749 JSON) keeps it."""
    content: dict[str, Any] = response.setdefault("content", {})
    reference = VALIDATION_PROBLEM_REF if status == 422 else PROBLEM_REF
    content[PROBLEM_MEDIA_TYPE] = {"schema": {"$ref": reference}}
    response["x-problem-codes"] = codes
    listed = ", ".join(f"`{code}`" for code in codes)
    if len(content) == 1 or not response.get("description"):
        title = TITLES.get(status, "Refused")
        response["description"] = (
            f"{title}: a problem document; `code` is one of {listed}."
            if codes
            else f"{title}: a problem document."
        )
    elif codes:
        response["description"] += f" Refusals of the platform are problem documents ({listed})."


def _add_parameter(operation: dict[str, Any], parameter: dict[str, Any]) -> None:
    parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
    key = (parameter["in"], parameter["name"].lower())
    if all((item.get("in"), str(item.get("name", "")).lower()) != key for item in parameters):
        parameters.append(dict(parameter))


def _is_error(status: str) -> bool:
    return status[:1] in ("4", "5")


def _authenticates(route: APIRoute, context: Any) -> bool:
    calls = [dependency.dependency for dependency in getattr(context, "dependencies", ())]
    return any(
        getattr(call, "__module__", None) == AUTHENTICATION_MODULE
        for call in [*calls, *_dependency_calls(route.dependant)]
    )


def _dependency_calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _dependency_calls(dependency)


def _operations(paths: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for item in paths.values():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield operation


def _uses_bearer(paths: Mapping[str, Any]) -> bool:
    return any(
        BEARER_SCHEME in requirement
        for operation in _operations(paths)
        for requirement in operation.get("security", ())
    )


def _drop_unused(schemas: dict[str, Any], names: Iterable[str], document: Any) -> None:
    for name in names:
        if name in schemas and json.dumps(document).count(f'"{SCHEMAS}{name}"') == 0:
            del schemas[name]
