"""Push with a Google service-account key: the channel asks the key's `token_uri` for an
OAuth2 access token with a signed JWT (RFC 7523), keeps it until shortly before it
expires, and sends with it; a token endpoint that refuses makes the send transient."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Form
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from starlette.responses import JSONResponse

from paymesh.kernel.config import Settings
from paymesh.notifications.channels import FcmPushChannel, OutgoingMessage, TransientSendError
from paymesh.notifications.settings import (
    FCM_SCOPE,
    JWT_BEARER,
    ServiceAccountTokens,
    push_tokens,
)
from paymesh.notifications.simulators import PushSimulator
from tests.profiles.support import loopback_socket, serving, url_of

ACCESS_TOKEN = "ya29.test-access-token"


class TokenEndpoint:
    """Google's OAuth2 token endpoint, as far as the JWT bearer grant goes."""

    def __init__(self, public_key: RSAKey, audience: str) -> None:
        self.public_key = public_key
        self.audience = audience
        self.grants: list[dict[str, Any]] = []
        self.refuse = False

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/token")
        async def token(grant_type: str = Form(), assertion: str = Form()) -> JSONResponse:
            if self.refuse or grant_type != JWT_BEARER:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            try:
                claims = jwt.decode(assertion, self.public_key).claims
            except (JoseError, ValueError):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            self.grants.append(claims)
            if claims.get("aud") != self.audience or claims.get("scope") != FCM_SCOPE:
                return JSONResponse({"error": "invalid_scope"}, status_code=400)
            return JSONResponse(
                {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
            )

        return app


@pytest.fixture
async def google(tmp_path: Path) -> AsyncIterator[tuple[Path, TokenEndpoint, str]]:
    key = RSAKey.generate_key(2048)
    token_socket, fcm_socket = loopback_socket(), loopback_socket()
    token_uri = url_of(token_socket) + "/token"
    endpoint = TokenEndpoint(RSAKey.import_key(key.as_pem(private=False)), token_uri)
    credentials = tmp_path / "service-account.json"
    credentials.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "paymesh-test",
                "private_key_id": "k1",
                "private_key": key.as_pem(private=True).decode(),
                "client_email": "push@paymesh-test.iam.gserviceaccount.com",
                "token_uri": token_uri,
            }
        )
    )
    simulator = PushSimulator(project_id="paymesh-test", bearer_token=ACCESS_TOKEN)
    async with serving(endpoint.app(), token_socket), serving(simulator.app(), fcm_socket):
        yield credentials, endpoint, url_of(fcm_socket)


def _message() -> OutgoingMessage:
    return OutgoingMessage(channel="push", to="device-token-0001", subject="Hi", text="Hello")


async def test_the_service_account_token_is_fetched_once_and_used(
    google: tuple[Path, TokenEndpoint, str],
) -> None:
    credentials, endpoint, fcm_url = google
    settings = Settings(
        _env_file=None,
        notifications={"fcm_credentials_file": str(credentials), "fcm_project_id": "paymesh-test"},
    )
    tokens = push_tokens(settings)
    assert isinstance(tokens, ServiceAccountTokens)
    channel = FcmPushChannel(project_id="paymesh-test", token_provider=tokens, base_url=fcm_url)
    try:
        first = await channel.send(_message())
        second = await channel.send(_message())
    finally:
        await channel.aclose()
    assert first.provider_message_id != second.provider_message_id
    [claims] = endpoint.grants  # one exchange for both sends
    assert claims["iss"] == "push@paymesh-test.iam.gserviceaccount.com"
    assert claims["exp"] - claims["iat"] == 3600


async def test_a_refused_token_exchange_is_a_transient_failure(
    google: tuple[Path, TokenEndpoint, str],
) -> None:
    credentials, endpoint, fcm_url = google
    endpoint.refuse = True
    tokens = ServiceAccountTokens.from_file(str(credentials))
    channel = FcmPushChannel(project_id="paymesh-test", token_provider=tokens, base_url=fcm_url)
    try:
        with pytest.raises(TransientSendError):
            await channel.send(_message())
    finally:
        await channel.aclose()
