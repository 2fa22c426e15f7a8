"""Risk's hot path, `POST /v1/risk/evaluate`, as a plain ASGI handler (kernel/fastpath.py).

Same contract as the FastAPI route in api.py, which stays declared for the OpenAPI
document: role `service`, the same body model, the same decision, the same problem
documents, the same Idempotency-Key rules. Here the decision is written in a transaction
shared with the decisions of concurrent requests (kernel/groupcommit.py), and answered
only after that transaction commits; with an Idempotency-Key (payments sends one), the
stored answer commits in that transaction too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from paymesh.kernel.app import FastRoute
from paymesh.kernel.auth import Caller
from paymesh.kernel.fastpath import json_endpoint, json_response
from paymesh.kernel.groupcommit import GroupCommit
from paymesh.kernel.idempotency import KeyedRequest
from paymesh.kernel.routing import replay_response
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.risk.api import EVALUATOR_ROLES
from paymesh.risk.schemas import EvaluationCreate
from paymesh.risk.service import Evaluations


def fast_paths(runtime: ServiceRuntime) -> dict[tuple[str, str], Any]:
    async def evaluate(
        body: EvaluationCreate, caller: Caller, key: KeyedRequest | None
    ) -> Response:
        evaluations: Evaluations = runtime.state["evaluations"]  # made at start
        group: GroupCommit = runtime.state["decisions"]
        answer, replayed = await evaluations.evaluate_grouped(group, caller, body, key)
        return replay_response(answer) if replayed else json_response(answer.body, answer.status)

    async def evaluate_plain(
        body: EvaluationCreate, caller: Caller, _session: AsyncSession | None
    ) -> Response:
        return await evaluate(body, caller, None)

    handler = json_endpoint(
        EvaluationCreate,
        evaluate_plain,
        roles=EVALUATOR_ROLES,
        keyed=evaluate,
        idempotency=runtime.idempotency,
    )
    return {("POST", "/v1/risk/evaluate"): FastRoute(handler, takes_idempotency_key=True)}
