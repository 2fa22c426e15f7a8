"""A Twilio Messages API simulator: basic auth, E.164 check (error 21211), answers
`queued`, then posts `sent` and `delivered` (or `failed`, error 30003, for numbers ending
in 0000) to the StatusCallback, signed with `X-Twilio-Signature`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httpx
import structlog
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse

from paymesh.kernel.background import BackgroundTasks
from paymesh.kernel.http import shared_tls_context
from paymesh.kernel.ids import new_id
from paymesh.notifications.channels import TWILIO_API_VERSION, twilio_signature
from paymesh.notifications.simulators.common import KEPT, Failures, add_listing

log = structlog.get_logger("paymesh.simulators.sms")

E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _sid(prefix: str) -> str:
    # Twilio sids: two letters and 32 hex digits.
    return prefix + new_id("sim").encode().hex()[-32:].upper()


@dataclass(frozen=True)
class CallbackAttempt:
    """One status callback as sent (tests check the signature and replay these)."""

    url: str
    params: dict[str, str]
    signature: str
    status: int | None


@dataclass
class SmsSimulator:
    account_sid: str
    auth_token: str
    callback_delay_seconds: float = 0.05
    messages: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEPT))
    callbacks: deque[CallbackAttempt] = field(default_factory=lambda: deque(maxlen=KEPT))
    failures: Failures = field(default_factory=Failures)
    _tasks: BackgroundTasks = field(default_factory=lambda: BackgroundTasks("sms-simulator"))

    def fail_next(self, status: int = 503, count: int = 1) -> None:
        self.failures.fail_next(status, count)

    def authorized(self, authorization: str | None) -> bool:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, secret = base64.b64decode(encoded.strip()).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(user.encode(), self.account_sid.encode()) & hmac.compare_digest(
            secret.encode(), self.auth_token.encode()
        )

    def create(self, form: dict[str, str]) -> JSONResponse:
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not E164.match(to):
            return _twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not sender:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        sid = _sid("SM")
        message: dict[str, Any] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": TWILIO_API_VERSION,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": str(max(1, -(-len(body) // 160))),
            "error_code": None,
            "error_message": None,
            "date_created": formatdate(usegmt=True),
            "uri": f"/{TWILIO_API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
            "status_callback": form.get("StatusCallback"),
        }
        self.messages.append(message)
        if message["status_callback"]:
            self._tasks.spawn(self._report(message), sid)
        return JSONResponse(message, status_code=201)

    async def _report(self, message: dict[str, Any]) -> None:
        final = "failed" if message["to"].endswith("0000") else "delivered"
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(10.0), verify=shared_tls_context()
        ) as client:
            for status in ("sent", final):
                await asyncio.sleep(self.callback_delay_seconds)
                message["status"] = status
                if status == "failed":
                    message["error_code"] = 30003
                    message["error_message"] = "Unreachable destination handset"
                await self._post(client, message)

    async def _post(self, client: httpx.AsyncClient, message: dict[str, Any]) -> None:
        url: str = message["status_callback"]
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": TWILIO_API_VERSION,
            "From": message["from"],
            "MessageSid": message["sid"],
            "MessageStatus": message["status"],
            "SmsSid": message["sid"],
            "SmsStatus": message["status"],
            "To": message["to"],
        }
        if message["error_code"] is not None:
            params["ErrorCode"] = str(message["error_code"])
        signature = twilio_signature(url, params, self.auth_token)
        status: int | None = None
        try:
            response = await client.post(
                url, data=params, headers={"x-twilio-signature": signature}
            )
            status = response.status_code
        except httpx.HTTPError as error:
            log.warning("sms_simulator_callback_failed", sid=message["sid"], error=repr(error))
        self.callbacks.append(CallbackAttempt(url, params, signature, status))

    async def aclose(self) -> None:
        await self._tasks.aclose()

    def app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await self.aclose()

        app = FastAPI(
            title="SMS (Twilio) simulator", docs_url=None, redoc_url=None, lifespan=lifespan
        )
        path = f"/{TWILIO_API_VERSION}/Accounts/{{account_sid}}/Messages.json"

        @app.post(path)
        async def create_message(account_sid: str, request: Request) -> Any:
            failure = self.failures.take()
            if failure is not None:
                return _twilio_error(failure, 20500, "Internal Server Error")
            if account_sid != self.account_sid or not self.authorized(
                request.headers.get("authorization")
            ):
                return _twilio_error(401, 20003, "Authenticate")
            form = await request.form()
            return self.create({key: str(value) for key, value in form.items()})

        add_listing(app, self.messages)
        return app
