"""A KYC vendor simulator: the vendor API `connectors/kyc.py` speaks, as an ASGI app.

Served in process by `paymesh up` at `/_simulators/kyc` (not in production), or alone by
`paymesh serve kyc-simulator`. Its decisions are scripted by the data, so demos and tests
are deterministic: a document number ending in `0000` is rejected (`document_expired`),
one ending in `9999` needs review, any other is verified, each after
`PAYMESH_PROVIDERS_KYC_SIMULATOR_DELAY_SECONDS`. The decision is posted to the check's
callback URL signed like a real vendor's (HMAC-SHA256 over the timestamp and the raw
body), and retried with backoff until the receiver answers 2xx (or 409: it already has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import structlog
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse

from paymesh.kernel.background import BackgroundTasks
from paymesh.kernel.config import Settings
from paymesh.kernel.http import shared_tls_context
from paymesh.kernel.ids import new_id
from paymesh.providers.connectors.kyc import (
    kyc_api_key,
    kyc_callback_url,
    kyc_webhook_secret,
)

log = structlog.get_logger("paymesh.simulators.kyc")

RETRY_DELAYS_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class _Applicant(BaseModel):
    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    date_of_birth: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    country: str = Field(pattern=r"^[A-Z]{2}$")


class _Document(BaseModel):
    type: Literal["passport", "national_id", "driving_licence"]
    number: str = Field(min_length=1, max_length=64)
    issuing_country: str = Field(pattern=r"^[A-Z]{2}$")


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reference: str = Field(min_length=1, max_length=128)
    applicant: _Applicant
    document: _Document
    callback_url: str | None = Field(default=None, max_length=2000)


@dataclass
class SimulatedCheck:
    id: str
    reference: str
    outcome: str
    reasons: list[dict[str, str]]
    callback_url: str
    status: str = "pending"

    def view(self) -> dict[str, Any]:
        reasons = self.reasons if self.status != "pending" else []
        return {
            "id": self.id,
            "reference": self.reference,
            "status": self.status,
            "reasons": reasons,
        }


@dataclass(frozen=True)
class Delivery:
    """One callback attempt, as sent (tests replay and tamper with these)."""

    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None


def scripted_outcome(document_number: str) -> tuple[str, list[dict[str, str]]]:
    if document_number.endswith("0000"):
        return "rejected", [{"code": "document_expired", "detail": "The document has expired."}]
    if document_number.endswith("9999"):
        return "needs_review", [
            {"code": "manual_review_required", "detail": "An analyst must look at the document."}
        ]
    return "verified", []


@dataclass
class KycSimulator:
    api_key: str
    webhook_secret: str
    delay_seconds: float = 1.0
    default_callback_url: str | None = None
    checks: dict[str, SimulatedCheck] = field(default_factory=dict)
    deliveries: deque[Delivery] = field(default_factory=lambda: deque(maxlen=1000))
    _by_idempotency_key: dict[str, str] = field(default_factory=dict)
    _tasks: BackgroundTasks = field(default_factory=lambda: BackgroundTasks("kyc-simulator"))

    @classmethod
    def from_settings(cls, settings: Settings) -> KycSimulator:
        return cls(
            api_key=kyc_api_key(settings),
            webhook_secret=kyc_webhook_secret(settings),
            delay_seconds=settings.providers.kyc_simulator_delay_seconds,
            default_callback_url=kyc_callback_url(settings),
        )

    def authorized(self, authorization: str | None) -> bool:
        scheme, _, key = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            key.strip().encode(), self.api_key.encode()
        )

    def create(self, request: CheckRequest, idempotency_key: str | None) -> SimulatedCheck | None:
        if idempotency_key and idempotency_key in self._by_idempotency_key:
            return self.checks[self._by_idempotency_key[idempotency_key]]
        callback_url = request.callback_url or self.default_callback_url
        if not callback_url:
            return None
        outcome, reasons = scripted_outcome(request.document.number)
        check = SimulatedCheck(new_id("vck"), request.reference, outcome, reasons, callback_url)
        self.checks[check.id] = check
        if idempotency_key:
            self._by_idempotency_key[idempotency_key] = check.id
        self._tasks.spawn(self._decide(check), check.id)
        log.info("kyc_simulator_check_created", check_id=check.id, outcome=outcome)
        return check

    def sign(self, body: bytes, timestamp: int) -> dict[str, str]:
        digest = hmac.new(
            self.webhook_secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
        ).hexdigest()
        return {
            "content-type": "application/json",
            "kyc-timestamp": str(timestamp),
            "kyc-signature": f"v1={digest}",
        }

    async def _decide(self, check: SimulatedCheck) -> None:
        await asyncio.sleep(self.delay_seconds)
        check.status = check.outcome
        body = json.dumps(
            {
                "id": new_id("vev"),
                "type": "check.completed",
                "created_at": int(time.time()),
                "check": check.view(),
            },
            separators=(",", ":"),
        ).encode()
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(10.0), verify=shared_tls_context()
        ) as client:
            for delay in (0.0, *RETRY_DELAYS_SECONDS):
                await asyncio.sleep(delay)
                if await self._deliver(client, check, body):
                    return
        log.warning("kyc_simulator_callback_abandoned", check_id=check.id)

    async def _deliver(self, client: httpx.AsyncClient, check: SimulatedCheck, body: bytes) -> bool:
        headers = self.sign(body, int(time.time()))
        status: int | None = None
        try:
            response = await client.post(check.callback_url, content=body, headers=headers)
            status = response.status_code
        except httpx.HTTPError as error:
            log.warning(
                "kyc_simulator_callback_failed", check_id=check.id, error=type(error).__name__
            )
        self.deliveries.append(Delivery(check.callback_url, headers, body, status))
        return status is not None and (200 <= status < 300 or status == 409)

    async def aclose(self) -> None:
        await self._tasks.aclose()

    def app(self) -> FastAPI:
        return _build_app(self)


def _build_app(simulator: KycSimulator) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await simulator.aclose()

    app = FastAPI(title="KYC vendor simulator", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.simulator = simulator

    def refused() -> JSONResponse:
        return JSONResponse({"detail": "invalid API key"}, status_code=401)

    @app.post("/v1/checks", status_code=202)
    async def create_check(request: Request) -> Any:
        # The key first, like a real vendor: an unauthenticated caller learns nothing.
        if not simulator.authorized(request.headers.get("authorization")):
            return refused()
        try:
            body = CheckRequest.model_validate_json(await request.body())
        except ValidationError as error:
            return JSONResponse(
                {"detail": error.errors(include_url=False, include_context=False)}, status_code=422
            )
        check = simulator.create(body, request.headers.get("idempotency-key"))
        if check is None:
            return JSONResponse({"detail": "callback_url is required"}, status_code=422)
        return JSONResponse(check.view(), status_code=202)

    @app.get("/v1/checks/{check_id}")
    async def get_check(check_id: str, request: Request) -> Any:
        if not simulator.authorized(request.headers.get("authorization")):
            return refused()
        check = simulator.checks.get(check_id)
        if check is None:
            return JSONResponse({"detail": "no such check"}, status_code=404)
        return check.view()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def build_app(settings: Settings) -> FastAPI:
    """The simulator configured like the platform's connector (same key and secret)."""
    return KycSimulator.from_settings(settings).app()
