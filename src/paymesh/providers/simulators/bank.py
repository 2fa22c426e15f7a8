"""A partner-bank simulator: the bank API `connectors/bank.py` speaks, as an ASGI app.

Served in process by `paymesh up` at `/_simulators/bank` (not in production), or alone by
`paymesh serve bank-simulator`, over HTTPS when a certificate is configured and with mutual
TLS when a client CA is. It takes ISO 20022 pacs.008 instructions, validates each against the
schema (an invalid one is answered `RJCT` `FF01`), dedupes them by `MsgId` + `EndToEndId`
(the same message again answers the original's current status and is not a second
instruction), and decides by the creditor account (see `bank_book.py`). Answers and statuses
are pacs.002 reports: `POST /pacs008` answers the status right after acceptance, `GET
/status/{end_to_end_id}` the current one, and every final status is posted to the callback
URL signed `X-Bank-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`,
retried with backoff until the receiver answers 2xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from paymesh.kernel.background import BackgroundTasks
from paymesh.kernel.config import Settings
from paymesh.kernel.config.banks import DEFAULT_BANK_NAME, BankSimulatorSettings
from paymesh.kernel.http import shared_tls_context
from paymesh.kernel.ids import new_id
from paymesh.providers.iso20022 import (
    CreditTransfer,
    Iso20022Invalid,
    StatusReport,
    build_pacs002,
    parse_pacs008,
)
from paymesh.providers.simulators.bank_book import (
    REASONS,
    Book,
    Instruction,
    Outcome,
    scripted_outcome,
)

log = structlog.get_logger("paymesh.simulators.bank")

XML_MEDIA_TYPE = "application/xml"
SIGNATURE_HEADER = "X-Bank-Signature"
RETRY_DELAYS_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
NOT_PROVIDED = "NOTPROVIDED"
CALLBACK_PATH = f"/v1/providers/banks/{DEFAULT_BANK_NAME}/status"
"""The connector's callback route for the default bank (connectors/bank.py callback_path)."""


@dataclass(frozen=True)
class Delivery:
    """One callback attempt, as sent (tests replay and tamper with these)."""

    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Bank-Signature value of `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def default_callback_url(settings: Settings) -> str | None:
    """Where final statuses go: the configured URL, else the platform's own callback route
    (only outside production, where the platform serves the simulator itself)."""
    section = settings.providers.bank_simulator
    if section.callback_url:
        return section.callback_url
    return None if settings.env == "production" else f"{settings.origin}{CALLBACK_PATH}"


@dataclass
class BankSimulator:
    callback_secret: str
    callback_url: str | None = None
    settle_delay_seconds: float = 2.0
    book: Book = field(default_factory=lambda: Book([]))
    deliveries: deque[Delivery] = field(default_factory=lambda: deque(maxlen=1000))
    _tasks: BackgroundTasks = field(default_factory=lambda: BackgroundTasks("bank-simulator"))

    @classmethod
    def from_settings(cls, settings: Settings) -> BankSimulator:
        section = settings.providers.bank_simulator
        return cls(
            callback_secret=section.callback_secret.get_secret_value(),
            callback_url=default_callback_url(settings),
            settle_delay_seconds=section.settle_delay_seconds,
            book=Book(section.accounts),
        )

    def receive(self, xml: bytes) -> StatusReport:
        """Take one pacs.008; the pacs.002 answer (its status right after acceptance)."""
        try:
            transfer = parse_pacs008(xml)
        except Iso20022Invalid as error:
            log.info("bank_simulator_message_invalid", errors=len(error.errors))
            return self._report_invalid(error)
        existing = self.book.instructions.get(transfer.end_to_end_id)
        if existing is not None:
            return self._answer_duplicate(existing, transfer)
        outcome = scripted_outcome(transfer.creditor_account)
        instruction = Instruction(transfer, outcome, received_at=datetime.now(UTC))
        self.book.instructions[transfer.end_to_end_id] = instruction
        log.info(
            "bank_simulator_instruction_received",
            end_to_end_id=transfer.end_to_end_id,
            outcome=outcome.value,
        )
        if outcome is Outcome.SETTLE:
            self._finalise(instruction, "ACSC")
        elif outcome in REASONS:
            code, text = REASONS[outcome]
            self._finalise(instruction, "RJCT", code, text)
        elif outcome is Outcome.SETTLE_LATER:
            self._tasks.spawn(self._settle_later(instruction), f"settle:{transfer.end_to_end_id}")
        return self.report(instruction)

    def report(self, instruction: Instruction) -> StatusReport:
        """A new pacs.002 with the instruction's current status."""
        return StatusReport(
            message_id=new_id("bst"),
            original_message_id=instruction.transfer.message_id,
            original_end_to_end_id=instruction.transfer.end_to_end_id,
            status=instruction.status,
            reason_code=instruction.reason_code,
            reason_text=instruction.reason_text,
            created_at=datetime.now(UTC),
        )

    def _answer_duplicate(self, existing: Instruction, transfer: CreditTransfer) -> StatusReport:
        if existing.transfer.message_id != transfer.message_id:
            # The same end-to-end id in another message is not a resubmission: refused,
            # and the original instruction stays as it is.
            return self._rejection(transfer.message_id, transfer.end_to_end_id, "AM05")
        existing.submissions += 1
        log.info("bank_simulator_duplicate", end_to_end_id=transfer.end_to_end_id)
        return self.report(existing)

    def _report_invalid(self, error: Iso20022Invalid) -> StatusReport:
        return self._rejection(NOT_PROVIDED, NOT_PROVIDED, "FF01", error.errors[0][:210])

    @staticmethod
    def _rejection(
        message_id: str, end_to_end_id: str, code: str, text: str | None = None
    ) -> StatusReport:
        return StatusReport(
            message_id=new_id("bst"),
            original_message_id=message_id,
            original_end_to_end_id=end_to_end_id,
            status="RJCT",
            reason_code=code,
            reason_text=text,
            created_at=datetime.now(UTC),
        )

    def _finalise(
        self,
        instruction: Instruction,
        status: str,
        reason_code: str | None = None,
        reason_text: str | None = None,
    ) -> None:
        instruction.status = status
        instruction.reason_code = reason_code
        instruction.reason_text = reason_text
        if status == "ACSC":
            self.book.credit(instruction.transfer)
        body = build_pacs002(self.report(instruction))
        name = f"callback:{instruction.transfer.end_to_end_id}"
        self._tasks.spawn(self._deliver_with_retries(instruction, body), name)

    async def _settle_later(self, instruction: Instruction) -> None:
        await asyncio.sleep(self.settle_delay_seconds)
        self._finalise(instruction, "ACSC")

    async def _deliver_with_retries(self, instruction: Instruction, body: bytes) -> None:
        url = self.callback_url
        if url is None:
            return
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(10.0), verify=shared_tls_context()
        ) as client:
            for delay in (0.0, *RETRY_DELAYS_SECONDS):
                await asyncio.sleep(delay)
                if await self._deliver(client, url, body):
                    return
        log.warning(
            "bank_simulator_callback_abandoned",
            end_to_end_id=instruction.transfer.end_to_end_id,
        )

    async def _deliver(self, client: httpx.AsyncClient, url: str, body: bytes) -> bool:
        headers = {
            "content-type": XML_MEDIA_TYPE,
            SIGNATURE_HEADER: sign(self.callback_secret, body, int(time.time())),
        }
        status: int | None = None
        try:
            response = await client.post(url, content=body, headers=headers)
            status = response.status_code
        except httpx.HTTPError as error:
            log.warning("bank_simulator_callback_failed", error=type(error).__name__)
        self.deliveries.append(Delivery(url, headers, body, status))
        return status is not None and 200 <= status < 300

    async def aclose(self) -> None:
        await self._tasks.aclose()

    def app(self) -> FastAPI:
        return _build_app(self)


def _xml(report: StatusReport) -> Response:
    return Response(build_pacs002(report), media_type=XML_MEDIA_TYPE)


def _build_app(simulator: BankSimulator) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await simulator.aclose()

    app = FastAPI(title="Partner bank simulator", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.simulator = simulator

    @app.post("/pacs008")
    async def submit(request: Request) -> Response:
        """Take a pacs.008 (application/xml); answer its pacs.002."""
        return _xml(simulator.receive(await request.body()))

    @app.get("/status/{end_to_end_id}")
    async def status(end_to_end_id: str) -> Response:
        """The current status of an instruction, as a pacs.002; 404 if unknown."""
        instruction = simulator.book.instructions.get(end_to_end_id)
        if instruction is None:
            return JSONResponse({"detail": "no such instruction"}, status_code=404)
        return _xml(simulator.report(instruction))

    @app.get("/accounts/{account}")
    async def account(account: str) -> Any:
        """The account lookup: `{exists, name, currency}`, or 404 if the bank has none."""
        found = simulator.book.lookup(account)
        if found is None:
            return JSONResponse({"exists": False}, status_code=404)
        return found.view()

    @app.get("/_admin/instructions")
    async def instructions() -> dict[str, Any]:
        """Every instruction received, once each (tests: "the bank saw one instruction")."""
        return {"instructions": [i.view() for i in simulator.book.instructions.values()]}

    @app.get("/_admin/accounts")
    async def accounts() -> dict[str, Any]:
        """The accounts the bank holds, with their balances (minor units)."""
        return {"accounts": [asdict(entry) for entry in simulator.book.accounts.values()]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def build_app(settings: Settings) -> FastAPI:
    """The simulator configured like the platform's default partner bank."""
    return BankSimulator.from_settings(settings).app()


def uvicorn_tls_options(section: BankSimulatorSettings) -> dict[str, Any]:
    """uvicorn.Config keyword arguments serving the simulator over HTTPS when a certificate
    is configured, and requiring a client certificate from `tls_client_ca` when one is."""
    if section.tls_certificate is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(section.tls_certificate),
        "ssl_keyfile": str(section.tls_private_key),
    }
    if section.tls_client_ca is not None:
        options |= {"ssl_ca_certs": str(section.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options
