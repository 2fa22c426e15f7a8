"""A JSON endpoint as a plain ASGI handler, for a service's `fast_paths` (kernel/app.py).

The same contract as a FastAPI route declared with `require(roles=..., scopes=...)` and a
Pydantic body: the bearer token is checked for the roles or scopes before a byte of the
body is read, the body is validated by the same model (errors as the same 422 problem
document), `PaymeshError`s become their problem documents, a database that cannot be
reached is 503 with `Retry-After`, and with `runtime` the handler works in a unit of work
that commits when it answers below 400 and rolls back otherwise. What it skips is the
framework's per-request routing, dependency and response-model work.

With `keyed`, a request that carries an Idempotency-Key is served here too, under the same
contract as `kernel/routing.py`'s (replay, 422 for another request under the key, 409
while it runs, 4xx outcomes stored, 5xx not): the key is checked, a stored outcome is
looked up and replayed before any work, and `keyed(body, caller, KeyedRequest)` runs work
that holds the key and stores its response in the transaction of its writes (for work
that shares a transaction with other requests': kernel/groupcommit.py).
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
    IdempotencyKeyReused,
    IdempotencyRequestInProgress,
    PaymeshError,
    Unauthenticated,
    is_connection_failure,
    render_error,
    validation_error,
)
from paymesh.kernel.idempotency import (
    IdempotencyStore,
    KeyedRequest,
    check_key,
    request_fingerprint,
)
from paymesh.kernel.routing import UnitOfWork, replay_response, stored_response
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
    keyed: Callable[[Model, Caller, KeyedRequest], Awaitable[Response]] | None = None,
    idempotency: IdempotencyStore | None = None,
) -> FastHandler:
    """`handle(body, caller, session)`: `session` is the unit of work's with `runtime`,
    None without. `keyed(body, caller, key)`, with the service's `idempotency` store,
    serves the requests that carry an Idempotency-Key."""
    if (keyed is None) != (idempotency is None):
        raise ValueError("keyed and idempotency go together")

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        unit: UnitOfWork | None = None
        try:
            caller = await verified_caller(request)
            if caller is None:
                raise Unauthenticated()
            check_access(caller, roles, scopes)
            body = await request.body()
            key = request.headers.get("idempotency-key") if keyed is not None else None
            if key is not None:
                check_key(key)
            try:
                data = model.model_validate_json(body)
            except ValidationError as error:
                raise validation_error(
                    {**item, "loc": ("body", *item["loc"])} for item in error.errors()
                ) from None
            if key is not None:
                assert keyed is not None and idempotency is not None
                response = await _keyed(request, body, caller, key, idempotency, data, keyed)
            elif runtime is None:
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


async def _keyed(
    request: Request,
    body: bytes,
    caller: Caller,
    key: str,
    store: IdempotencyStore,
    data: Model,
    keyed: Callable[[Model, Caller, KeyedRequest], Awaitable[Response]],
) -> Response:
    """The Idempotency-Key contract around `keyed` (as kernel/routing.py's `_idempotent`)."""
    scope = caller.idempotency_scope
    query = request.url.query
    target = request.url.path + (f"?{query}" if query else "")
    fingerprint = request_fingerprint(request.method, target, body)
    with store.running(scope, key):
        stored = await store.lookup(scope, key, fingerprint)
        if stored is not None:
            return replay_response(stored)
        try:
            response = await keyed(data, caller, KeyedRequest(store, scope, key, fingerprint))
        except (IdempotencyRequestInProgress, IdempotencyKeyReused):
            raise  # about the key, not an outcome of the request: nothing stored
        except PaymeshError as error:
            if error.status >= 500:
                raise
            response = render_error(request, error)
            # The work's writes rolled back with its transaction; the refusal is the
            # answer a retry gets too.
            await store.complete_refusal(scope, key, fingerprint, stored_response(response))
        return response


def model_response(model: BaseModel, status: int = 200) -> Response:
    return json_response(model.model_dump_json().encode(), status)


__all__ = ["json_endpoint", "json_response", "model_response"]
