"""The channels as configured: real providers when their settings name them, else the local
simulators the platform serves (never in production, where an unconfigured channel is off).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from paymesh.kernel.config import Settings
from paymesh.kernel.http import shared_tls_context
from paymesh.notifications.channels import (
    Channel,
    FcmPushChannel,
    SmtpChannel,
    TokenProvider,
    TwilioSmsChannel,
    static_token,
)
from paymesh.notifications.routing import DEFAULT_ROUTES, Route

SMS_SIMULATOR_PATH = "/_simulators/sms"
PUSH_SIMULATOR_PATH = "/_simulators/push"
SMS_CALLBACK_PATH = "/v1/notifications/sms/status"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _derived(settings: Settings, purpose: str) -> str:
    secret = settings.signing_secret.get_secret_value().encode()
    return hmac.new(secret, f"paymesh:notifications:{purpose}".encode(), hashlib.sha256).hexdigest()


def twilio_auth_token(settings: Settings) -> str:
    configured = settings.notifications.twilio_auth_token
    return configured.get_secret_value() if configured else _derived(settings, "twilio")


def push_simulator_token(settings: Settings) -> str:
    return _derived(settings, "fcm")


def simulated(settings: Settings) -> bool:
    return settings.env != "production"


def sms_base_url(settings: Settings) -> str | None:
    configured = settings.notifications.twilio_url
    if configured:
        return configured.rstrip("/")
    return settings.origin + SMS_SIMULATOR_PATH if simulated(settings) else None


def push_base_url(settings: Settings) -> str | None:
    configured = settings.notifications.fcm_url
    if configured:
        return configured.rstrip("/")
    return settings.origin + PUSH_SIMULATOR_PATH if simulated(settings) else None


def sms_callback_url(settings: Settings) -> str:
    return settings.notifications.sms_status_callback_url or settings.origin + SMS_CALLBACK_PATH


def mail_catcher_wanted(settings: Settings) -> bool:
    return settings.notifications.smtp_host is None and simulated(settings)


def routes(settings: Settings) -> list[Route]:
    configured = settings.notifications.routes
    if configured is None:
        return list(DEFAULT_ROUTES)
    return [Route.model_validate(item) for item in configured]


@dataclass(frozen=True)
class SmsCallbackConfig:
    url: str
    auth_token: str


class ServiceAccountTokens:
    """OAuth2 access tokens for FCM from a Google service-account key: a JWT signed with
    the key (RS256) exchanged at its `token_uri` (RFC 7523 JWT bearer grant), kept until a
    minute before it expires."""

    def __init__(self, key: dict[str, Any], *, timeout_seconds: float = 10.0) -> None:
        self.client_email = str(key["client_email"])
        self.token_uri = str(key["token_uri"])
        self.key_id = key.get("private_key_id")
        self._key = RSAKey.import_key(key["private_key"])
        self._timeout = timeout_seconds
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def from_file(cls, path: str, *, timeout_seconds: float = 10.0) -> ServiceAccountTokens:
        return cls(json.loads(Path(path).read_text()), timeout_seconds=timeout_seconds)

    def assertion(self, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.client_email,
            "scope": FCM_SCOPE,
            "aud": self.token_uri,
            "iat": issued,
            "exp": issued + 3600,
        }
        header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
        if self.key_id:
            header["kid"] = self.key_id
        return jwt.encode(header, claims, self._key)

    async def __call__(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                await self._refresh()
            assert self._token is not None
            return self._token

    async def _refresh(self) -> None:
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout), verify=shared_tls_context()
        ) as client:
            response = await client.post(
                self.token_uri, data={"grant_type": JWT_BEARER, "assertion": self.assertion()}
            )
        response.raise_for_status()
        body = response.json()
        self._token = str(body["access_token"])
        lifetime = float(body.get("expires_in", 3600))
        self._expires_at = time.monotonic() + max(0.0, lifetime - 60)


def push_tokens(settings: Settings) -> TokenProvider:
    section = settings.notifications
    if section.fcm_credentials_file:
        return ServiceAccountTokens.from_file(
            section.fcm_credentials_file, timeout_seconds=section.send_timeout_seconds
        )
    return static_token(push_simulator_token(settings))


def build_channels(settings: Settings, *, mail_port: int | None) -> dict[str, Channel]:
    """Every channel that is configured (or simulated); `mail_port` is the local catcher's
    port when it runs."""
    section = settings.notifications
    timeout = section.send_timeout_seconds
    channels: dict[str, Channel] = {}
    if section.smtp_host is not None:
        channels["email"] = SmtpChannel(
            host=section.smtp_host,
            port=section.smtp_port or (465 if section.smtp_security == "tls" else 587),
            sender=section.email_sender,
            username=section.smtp_username,
            password=section.smtp_password.get_secret_value() if section.smtp_password else None,
            use_tls=section.smtp_security == "tls",
            start_tls=section.smtp_security == "starttls",
            timeout_seconds=timeout,
        )
    elif mail_port is not None:
        channels["email"] = SmtpChannel(
            host="127.0.0.1",
            port=mail_port,
            sender=section.email_sender,
            start_tls=False,
            timeout_seconds=timeout,
        )
    sms_url = sms_base_url(settings)
    if sms_url is not None:
        channels["sms"] = TwilioSmsChannel(
            account_sid=section.twilio_account_sid,
            auth_token=twilio_auth_token(settings),
            from_number=section.sms_sender,
            base_url=sms_url,
            status_callback_url=sms_callback_url(settings),
            timeout_seconds=timeout,
        )
    push_url = push_base_url(settings)
    if push_url is not None:
        channels["push"] = FcmPushChannel(
            project_id=section.fcm_project_id,
            token_provider=push_tokens(settings),
            base_url=push_url,
            timeout_seconds=timeout,
        )
    return channels
