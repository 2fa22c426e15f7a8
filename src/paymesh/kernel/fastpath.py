"""A JSON endpoint as a plain ASGI handler, for a service's `fast_paths` (kernel/app.py).

The same contract as a FastAPI route declared with `require(roles=..., scopes=...)` and a
Pydantic body: the bearer token is checked for the roles or scopes before a byte of the
body is read, the body is validated by the same model (errors as the same 422 problem
document), `PaymeshError`s become their problem documents, a database that cannot be
reached is 503 with `Retry-After`, and with `runtime` the handler works in a unit of work
that commits when it answers below 400 and rolls back otherwise. What it skips is the
framework's per-request routing, dependency and response-model work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from paymesh.kernel.auth import Caller, check_access, verified_caller
from paymesh.kernel.errors import (
    DatabaseUnavailable,
    PaymeshError,
    Unauthenticated,
    is_connection_failure,
    render_error,
    validation_error,
)
from paymesh.kernel.routing import UnitOfWork
from paymesh.kernel.runtime import ServiceRuntime

Model = TypeVar("Model", bound=BaseModel)
FastHandler = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_response(body: bytes, status: int) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def json_endpoint(
    model: type[Model],
    handle: Callable[[Model, Caller, AsyncSession | None], Awaitable[Response]],
    *,
    roles: frozenset[str],
    scopes: frozenset[str] = frozenset(),
    runtime: ServiceRuntime | None = None,
) -> FastHandler:
    """`handle(body, caller, session)`: `session` is the unit of work's with `runtime`,
    None without."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        unit: UnitOfWork | None = None
        try:
            caller = await verified_caller(request)
            if caller is None:
                raise Unauthenticated()
            check_access(caller, roles, scopes)
            body = await request.body()
            try:
                data = model.model_validate_json(body)
            except ValidationError as error:
                raise validation_error(
                    {**item, "loc": ("body", *item["loc"])} for item in error.errors()
                ) from None
            if runtime is None:
                response = await handle(data, caller, None)
            else:
                unit = UnitOfWork(runtime, actor=caller)
                response = await handle(data, caller, await unit.session())
                if response.status_code < 400:
                    await unit.commit()
        except PaymeshError as error:
            response = render_error(request, error)
        except (DBAPIError, SQLAlchemyTimeoutError) as error:
            if not is_connection_failure(error):
                raise
            response = render_error(request, DatabaseUnavailable())
            response.headers["Retry-After"] = "1"
        finally:
            if unit is not None:
                await unit.close()
        await response(scope, receive, send)

    return asgi


def model_response(model: BaseModel, status: int = 200) -> Response:
    return json_response(model.model_dump_json().encode(), status)


__all__ = ["json_endpoint", "json_response", "model_response"]
