"""One error root, one rendering: RFC 9457 problem documents with a stable `code`.

Services raise subclasses of `PaymeshError` named after the condition; they never raise
HTTPException. `install_error_handlers` renders every error, including request validation
and unknown routes, as `application/problem+json`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from paymesh.kernel.jsonutil import dumps

log = structlog.get_logger("paymesh.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class PaymeshError(Exception):
    """Root of every error a client may see. Subclasses set `code`, `status` and `title`."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        return problem_document(
            code=self.code,
            status=self.status,
            title=self.title,
            detail=self.detail,
            instance=instance,
            **self.extensions,
        )


class RemoteServiceError(PaymeshError):
    """A problem document returned by another Paymesh service, passed through unchanged."""

    def __init__(self, status: int, code: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.remote_status = status
        self.remote_code = code

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        return problem_document(
            code=self.remote_code,
            status=self.remote_status,
            title=self.remote_code.replace("_", " ").capitalize(),
            detail=self.detail,
            instance=instance,
            **self.extensions,
        )


class ServiceUnavailable(PaymeshError):
    code = "service_unavailable"
    status = 503
    title = "A service this request depends on is unavailable"


class BadRequest(PaymeshError):
    code = "bad_request"
    status = 400
    title = "Bad request"


class MalformedJson(PaymeshError):
    code = "malformed_json"
    status = 400
    title = "The request body is not valid JSON"


class ValidationFailed(PaymeshError):
    code = "validation_failed"
    status = 422
    title = "The request is not valid"


class Unauthenticated(PaymeshError):
    code = "unauthenticated"
    status = 401
    title = "A valid bearer token is required"


class Forbidden(PaymeshError):
    code = "forbidden"
    status = 403
    title = "The caller may not do this"


class NotFound(PaymeshError):
    code = "not_found"
    status = 404
    title = "Not found"


class MethodNotAllowed(PaymeshError):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"


class IdempotencyKeyReused(PaymeshError):
    code = "idempotency_key_reused"
    status = 422
    title = "This Idempotency-Key was used with a different request"


class IdempotencyRequestInProgress(PaymeshError):
    code = "idempotency_request_in_progress"
    status = 409
    title = "A request with this Idempotency-Key is still being processed"


class InvalidIdempotencyKey(PaymeshError):
    code = "invalid_idempotency_key"
    status = 400
    title = "The Idempotency-Key header is not valid"


def problem_document(
    *,
    code: str,
    status: int,
    title: str,
    detail: str | None = None,
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": f"urn:paymesh:problem:{code}",
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        document["detail"] = detail
    if instance:
        document["instance"] = instance
    document.update(extensions)
    return document


def problem_response(
    document: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        content=dumps(document),
        status_code=int(document["status"]),
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


class Problem(BaseModel):
    """RFC 9457 problem document as Paymesh renders it."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None


class FieldError(BaseModel):
    """One invalid field of a 422 `validation_failed`."""

    field: str = Field(description="Dotted path of the field, e.g. `transfers.0.amount`.")
    location: str | None = Field(description="`body`, `query`, `path` or `header`.")
    message: str | None
    type: str | None = Field(description="Machine-readable reason, e.g. `missing`.")


class ValidationProblem(Problem):
    """A 422 problem document; `validation_failed` lists the invalid fields."""

    errors: list[FieldError] | None = None


def problem_responses(*errors: type[PaymeshError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the errors an endpoint may raise, grouped by status. The
    codes are kept in `x-problem-codes`; `kernel/openapi.py` adds the kernel's own."""
    by_status: dict[int, list[str]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error.code)
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {}},
            "description": "Problem document; `code` is one of: " + ", ".join(sorted(codes)),
            "x-problem-codes": sorted(set(codes)),
        }
        for status, codes in sorted(by_status.items())
    }


def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def render_error(request: Request, error: PaymeshError) -> Response:
    """The problem+json response for `error`, with the request id."""
    document = error.problem(instance=request.url.path)
    request_id = _request_id(request)
    if request_id:
        document["request_id"] = request_id
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="paymesh"'
    return problem_response(document, headers)


def _validation_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    fields = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        fields.append(
            {
                "field": ".".join(location[1:]) if len(location) > 1 else ".".join(location),
                "location": location[0] if location else None,
                "message": error.get("msg"),
                "type": error.get("type"),
            }
        )
    return fields


async def _handle_paymesh_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, PaymeshError)
    return render_error(request, error)


def validation_error(errors: Iterable[Any]) -> PaymeshError:
    """400 for a body that is not JSON, 422 listing the fields otherwise."""
    errors = list(errors)
    if any(item.get("type") == "json_invalid" for item in errors):
        return MalformedJson(detail=str(errors[0].get("msg")))
    return ValidationFailed(
        detail="One or more fields are invalid", errors=_validation_errors(errors)
    )


async def _handle_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return render_error(request, validation_error(error.errors()))


async def _handle_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    mapped: PaymeshError
    if error.status_code == 404:
        mapped = NotFound(detail=f"No route or resource at {request.url.path}")
    elif error.status_code == 405:
        mapped = MethodNotAllowed(detail=f"{request.method} is not allowed here")
    else:
        mapped = BadRequest(detail=str(error.detail))
        document = mapped.problem(request.url.path)
        document["status"] = error.status_code
        return problem_response(document, error.headers)
    response = render_error(request, mapped)
    response.headers.update(error.headers or {})
    if error.status_code == 405:
        # Starlette names the methods of the first route whose path matched; a path served
        # by several routes (GET and POST /v1/ledger/transfers) allows all of theirs.
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path."""
    path: str = request.scope["path"]
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        pattern = getattr(route, "path_regex", None)
        if route.methods and pattern is not None and pattern.match(path):
            methods.update(route.methods)
    return sorted(methods)


class DatabaseUnavailable(PaymeshError):
    code = "database_unavailable"
    status = 503
    title = "The database is out of connections or unreachable; retry shortly"


_CONNECTION_FAILURES = frozenset(
    {
        "TooManyConnectionsError",
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "ConnectionRefusedError",
        "InterfaceError",
    }
)


def is_connection_failure(error: BaseException) -> bool:
    """A pool that waited too long for a connection, or a database refusing connections:
    the request may succeed if retried, and is not the server's bug (503, not 500)."""
    if isinstance(error, SQLAlchemyTimeoutError):
        return True
    if isinstance(error, DBAPIError):
        original = error.orig
        return bool(error.connection_invalidated) or (
            original is not None and type(original).__name__ in _CONNECTION_FAILURES
        )
    return False


async def _handle_database_error(request: Request, error: Exception) -> Response:
    if not is_connection_failure(error):
        raise error
    log.warning("database_unavailable", error=type(error).__name__)
    response = render_error(request, DatabaseUnavailable())
    response.headers["Retry-After"] = "1"
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PaymeshError, _handle_paymesh_error)
    app.add_exception_handler(SQLAlchemyTimeoutError, _handle_database_error)
    app.add_exception_handler(DBAPIError, _handle_database_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
