"""How other services use risk: the narrow `RiskClient` protocol and its HTTP
implementation. Payments asks before money moves and acts on the answer."""

from __future__ import annotations

from typing import Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from paymesh.kernel.errors import IdempotencyRequestInProgress, RemoteServiceError
from paymesh.kernel.http import ServiceClient
from paymesh.risk.schemas import DecisionOut, EvaluationCreate

IN_PROGRESS_WAIT_SECONDS = 3.0
"""How long `HttpRiskClient.evaluate` waits for a concurrent decision under its key."""


class RiskClient(Protocol):
    async def evaluate(self, evaluation: EvaluationCreate) -> DecisionOut:
        """Raises `RemoteServiceError`: `customer_not_found`, `currency_not_convertible`
        (422), `facts_unavailable` / `no_sanctions_list` (503: no decision, do not pay)."""
        ...


class HttpRiskClient:
    """`RiskClient` over HTTP: `HttpRiskClient(runtime.client("risk"))`."""

    def __init__(self, http: ServiceClient) -> None:
        self.http = http

    async def evaluate(self, evaluation: EvaluationCreate) -> DecisionOut:
        """While another request with the same key is being decided (the same payment
        advanced twice at once: a retry, the recovery job), waits briefly for that
        decision and answers it (risk replays it); then raises the 409."""
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(IN_PROGRESS_WAIT_SECONDS),
            wait=wait_exponential(multiplier=0.02, max=0.5),
            retry=retry_if_exception(_still_deciding),
            reraise=True,
        ):
            with attempt:
                response = await self.http.request(
                    "POST",
                    "/v1/risk/evaluate",
                    json=evaluation.model_dump(mode="json", exclude_none=True),
                    # A retry of the same payment gets the same decision, and counts once.
                    idempotency_key=f"evaluate:{evaluation.transaction_id}",
                )
        return DecisionOut.model_validate_json(response.content)


def _still_deciding(error: BaseException) -> bool:
    return (
        isinstance(error, RemoteServiceError)
        and error.remote_code == IdempotencyRequestInProgress.code
    )
