"""The ledger's hot paths, `POST /v1/ledger/transfers` and `/transfers/batch`, as plain
ASGI handlers.

Same contract as the FastAPI routes in api.py (which stay declared for the OpenAPI document
and serve requests carrying an Idempotency-Key): bearer token checked for the writer roles
before a byte of the body is read, body bounded and checked by the same decoding layer
(`kernel/decoding.py`, which `kernel.app.FastPaths` puts in front) and validated by the
same Pydantic models, errors as the same problem documents. They
only skip the framework's per-request routing, dependency and response-model work, which
at thousands of transfers a second costs more than the transfers themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from paymesh.kernel.auth import check_access, verified_caller
from paymesh.kernel.errors import PaymeshError, Unauthenticated, render_error, validation_error
from paymesh.kernel.jsonutil import dumps
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.ledger.api import WRITER_ROLES, WRITER_SCOPES
from paymesh.ledger.schemas import TransferBatch, TransferCreate
from paymesh.ledger.service import LedgerService

Model = TypeVar("Model", bound=BaseModel)
Handle = Callable[[Any], Awaitable[Response]]


def _json_response(body: bytes, status: int) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def fast_paths(runtime: ServiceRuntime) -> dict[tuple[str, str], Any]:
    service: LedgerService = runtime.state["ledger"]

    def endpoint(model: type[Model], handle: Callable[[Model], Awaitable[Response]]) -> Any:
        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            try:
                caller = await verified_caller(request)
                if caller is None:
                    raise Unauthenticated()
                check_access(caller, WRITER_ROLES, WRITER_SCOPES)
                body = await request.body()
                try:
                    data = model.model_validate_json(body)
                except ValidationError as error:
                    raise validation_error(
                        {**item, "loc": ("body", *item["loc"])} for item in error.errors()
                    ) from None
                response = await handle(data)
            except PaymeshError as error:
                response = render_error(request, error)
            await response(scope, receive, send)

        return asgi

    async def create_transfer(data: TransferCreate) -> Response:
        outcome = await service.create_transfer(data)
        return _json_response(dumps(outcome.transfer), 201 if outcome.created else 200)

    async def create_batch(data: TransferBatch) -> Response:
        result = await service.create_batch(data)
        return _json_response(result.model_dump_json().encode(), 200)

    return {
        ("POST", "/v1/ledger/transfers"): endpoint(TransferCreate, create_transfer),
        ("POST", "/v1/ledger/transfers/batch"): endpoint(TransferBatch, create_batch),
    }
