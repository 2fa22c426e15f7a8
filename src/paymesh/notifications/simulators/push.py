"""An FCM HTTP v1 `messages:send` simulator: bearer token (401 UNAUTHENTICATED),
INVALID_ARGUMENT for malformed messages, 404 UNREGISTERED for tokens starting with `bad`."""

from __future__ import annotations

import hmac
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse

from paymesh.kernel.ids import new_id
from paymesh.notifications.simulators.common import KEPT, Failures, add_listing


@dataclass
class PushSimulator:
    project_id: str
    bearer_token: str
    messages: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEPT))
    failures: Failures = field(default_factory=Failures)

    def fail_next(self, status: int = 503, count: int = 1) -> None:
        self.failures.fail_next(status, count)

    def authorized(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.bearer_token.encode()
        )

    def send(self, project_id: str, body: Any) -> JSONResponse:
        if project_id != self.project_id:
            return _google_error(404, "NOT_FOUND", "Requested entity was not found.")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return _google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        targets = [key for key in ("token", "topic", "condition") if message.get(key)]
        data = message.get("data") or {}
        if len(targets) != 1 or not isinstance(data, dict):
            return _google_error(
                400,
                "INVALID_ARGUMENT",
                "Request contains an invalid argument.",
                "INVALID_ARGUMENT",
            )
        if not all(isinstance(value, str) for value in data.values()):
            return _google_error(
                400, "INVALID_ARGUMENT", "data values must be strings", "INVALID_ARGUMENT"
            )
        token = str(message.get("token") or "")
        if token.startswith("bad"):
            return _google_error(
                404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"
            )
        name = f"projects/{self.project_id}/messages/{new_id('msg')}"
        self.messages.append({"name": name, "message": message})
        return JSONResponse({"name": name})

    def app(self) -> FastAPI:
        app = FastAPI(title="Push (FCM v1) simulator", docs_url=None, redoc_url=None)

        @app.post("/v1/projects/{project_id}/messages:send")
        async def send_message(project_id: str, request: Request) -> Any:
            failure = self.failures.take()
            if failure is not None:
                return _google_error(failure, "UNAVAILABLE", "The service is unavailable.")
            if not self.authorized(request.headers.get("authorization")):
                return _google_error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials.",
                    "THIRD_PARTY_AUTH_ERROR",
                )
            try:
                body = await request.json()
            except ValueError:
                return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            return self.send(project_id, body)

        add_listing(app, self.messages)
        return app


def _google_error(
    status: int, google_status: str, message: str, fcm_code: str | None = None
) -> JSONResponse:
    error: dict[str, Any] = {"code": status, "message": message, "status": google_status}
    if fcm_code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        ]
    return JSONResponse({"error": error}, status_code=status)
