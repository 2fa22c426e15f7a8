"""Small typed factories for identity tests: users, clients, PKCE pairs, login flows."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from paymesh.identity import service
from paymesh.identity.schemas import ClientCreate, ClientCreated, User, UserCreate
from paymesh.platform import Platform

ISSUER = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery staple"
REDIRECT_URI = "http://127.0.0.1:9000/callback"


async def create_user(platform: Platform, username: str = "alice", **fields: Any) -> User:
    data = UserCreate(username=username, password=PASSWORD, **fields)
    async with platform.runtimes["identity"].database.transaction() as session:
        return await service.create_user(session, data)


async def create_client(platform: Platform, **fields: Any) -> ClientCreated:
    defaults: dict[str, Any] = {
        "name": "Test app",
        "public": True,
        "first_party": True,
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "profile", "email", "offline_access"],
    }
    data = ClientCreate(**{**defaults, **fields})
    async with platform.runtimes["identity"].database.transaction() as session:
        return await service.create_client(session, data)


async def create_service_client(platform: Platform, **fields: Any) -> tuple[str, str]:
    """A confidential client for the client credentials grant: its id and secret."""
    defaults: dict[str, Any] = {
        "public": False,
        "grant_types": ["client_credentials"],
        "scopes": [],
        "redirect_uris": [],
    }
    app = await create_client(platform, **{**defaults, **fields})
    assert app.client_secret is not None
    return app.client_id, app.client_secret


@dataclass
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def make(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_params(client_id: str, pkce: Pkce | None, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email offline_access",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
    }
    if pkce is not None:
        params |= {"code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    return params | extra


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r"<input type='hidden' name='([^']+)' value='([^']*)'>", html))


async def login(
    client: httpx.AsyncClient,
    params: dict[str, str],
    username: str = "alice",
    password: str = PASSWORD,
    totp: str = "",
) -> httpx.Response:
    """Open the authorize URL, post the login form like a browser; the final response."""
    page = await client.get("/oauth2/authorize", params=params)
    assert page.status_code == 200, page.text
    fields = hidden_fields(page.text)
    fields["csrf_token"] = fields["csrf_token"].replace("&amp;", "&")
    form = {**fields, "username": username, "password": password, "totp": totp}
    form["authorization_request"] = form["authorization_request"].replace("&amp;", "&")
    return await client.post("/oauth2/authorize", data=form)


def redirect_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def authorization_code(
    client: httpx.AsyncClient, client_id: str, pkce: Pkce, **extra: str
) -> str:
    params = authorize_params(client_id, pkce, **extra)
    query = redirect_query(await login(client, params))
    assert query["state"] == params["state"]
    return query["code"]


async def exchange_code(
    client: httpx.AsyncClient, client_id: str, code: str, verifier: str | None, **extra: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": client_id,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return await client.post("/oauth2/token", data=form | extra)
