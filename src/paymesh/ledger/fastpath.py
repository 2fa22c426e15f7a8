"""The ledger's hot path, `POST /v1/ledger/transfers`, as a plain ASGI handler.

Same contract as the FastAPI route in api.py (which stays declared for the OpenAPI
document and serves requests carrying an Idempotency-Key): bearer token checked for the
writer roles, body validated by the same Pydantic model, errors as problem documents.
It only skips the framework's per-request routing and dependency work, which at
thousands of transfers a second costs more than the transfer itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from paymesh.kernel.auth import Unauthenticated, authenticate, check_access
from paymesh.kernel.errors import PaymeshError, render_error, validation_error
from paymesh.kernel.jsonutil import dumps
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.ledger.schemas import TransferCreate
from paymesh.ledger.service import LedgerService

WRITER_ROLES = frozenset({"admin", "finance", "service"})
WRITER_SCOPES = frozenset({"ledger", "ledger:write"})


def fast_paths(runtime: ServiceRuntime) -> dict[tuple[str, str], Any]:
    service: LedgerService = runtime.state["ledger"]
    verifier = runtime.token_verifier

    async def create_transfer(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            caller = authenticate(request, verifier)
            if caller is None:
                raise Unauthenticated()
            check_access(caller, WRITER_ROLES, WRITER_SCOPES)
            try:
                data = TransferCreate.model_validate_json(await request.body())
            except ValidationError as error:
                raise validation_error(
                    {**item, "loc": ("body", *item["loc"])} for item in error.errors()
                ) from None
            outcome = await service.create_transfer(data)
            response = Response(
                dumps(outcome.transfer),
                status_code=201 if outcome.created else 200,
                media_type="application/json",
            )
        except PaymeshError as error:
            response = render_error(request, error)
        await response(scope, receive, send)

    return {("POST", "/v1/ledger/transfers"): create_transfer}
