"""The ledger's hot paths, `POST /v1/ledger/transfers` and `/transfers/batch`, as plain
ASGI handlers.

Same contract as the FastAPI routes in api.py (which stay declared for the OpenAPI document
and serve requests carrying an Idempotency-Key): bearer token checked for the writer roles
before a byte of the body is read, body bounded and checked by the same decoding layer
(`kernel/decoding.py`, which `kernel.app.FastPaths` puts in front) and validated by the
same Pydantic models, errors as the same problem documents (kernel/fastpath.py). They
only skip the framework's per-request routing, dependency and response-model work, which
at thousands of transfers a second costs more than the transfers themselves.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from paymesh.kernel.auth import Caller
from paymesh.kernel.fastpath import json_endpoint, json_response, model_response
from paymesh.kernel.jsonutil import dumps
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.ledger.api import WRITER_ROLES, WRITER_SCOPES
from paymesh.ledger.schemas import TransferBatch, TransferCreate
from paymesh.ledger.service import LedgerService


def fast_paths(runtime: ServiceRuntime) -> dict[tuple[str, str], Any]:
    service: LedgerService = runtime.state["ledger"]

    # The engine runs its own transactions (group commit): no unit of work here.
    async def create_transfer(
        data: TransferCreate, _caller: Caller, _session: AsyncSession | None
    ) -> Response:
        outcome = await service.create_transfer(data)
        return json_response(dumps(outcome.transfer), 201 if outcome.created else 200)

    async def create_batch(
        data: TransferBatch, _caller: Caller, _session: AsyncSession | None
    ) -> Response:
        return model_response(await service.create_batch(data))

    def endpoint(model: Any, handle: Any) -> Any:
        return json_endpoint(model, handle, roles=WRITER_ROLES, scopes=WRITER_SCOPES)

    return {
        ("POST", "/v1/ledger/transfers"): endpoint(TransferCreate, create_transfer),
        ("POST", "/v1/ledger/transfers/batch"): endpoint(TransferBatch, create_batch),
    }
