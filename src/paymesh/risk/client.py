"""How other services use risk: the narrow `RiskClient` protocol and its HTTP
implementation. Payments asks before money moves and acts on the answer."""

from __future__ import annotations

from typing import Protocol

from paymesh.kernel.http import ServiceClient
from paymesh.risk.schemas import DecisionOut, EvaluationCreate


class RiskClient(Protocol):
    async def evaluate(self, evaluation: EvaluationCreate) -> DecisionOut:
        """Raises `RemoteServiceError`: `customer_not_found`, `currency_not_convertible`
        (422), `facts_unavailable` / `no_sanctions_list` (503: no decision, do not pay),
        `idempotency_request_in_progress` (409: the same transaction is still being
        decided elsewhere after the client's wait for it)."""
        ...


class HttpRiskClient:
    """`RiskClient` over HTTP: `HttpRiskClient(runtime.client("risk"))`."""

    def __init__(self, http: ServiceClient) -> None:
        self.http = http

    async def evaluate(self, evaluation: EvaluationCreate) -> DecisionOut:
        response = await self.http.request(
            "POST",
            "/v1/risk/evaluate",
            json=evaluation.model_dump(mode="json", exclude_none=True),
            # A retry of the same payment gets the same decision, and counts once; one
            # advanced twice at once waits for the first decision (`ServiceClient`).
            idempotency_key=f"evaluate:{evaluation.transaction_id}",
        )
        return DecisionOut.model_validate_json(response.content)
