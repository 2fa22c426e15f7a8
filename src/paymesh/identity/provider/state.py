"""Everything the provider's routes use, built once per runtime (`app.setup`)."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from paymesh.identity.authentication import Authenticator
from paymesh.identity.keys import KeyStore
from paymesh.identity.provider import grants
from paymesh.identity.provider.endpoints import Introspection, Revocation
from paymesh.identity.provider.exchange import Exchange
from paymesh.identity.provider.server import Provider, RequestData
from paymesh.identity.revocation import TokenRevoker
from paymesh.identity.security import Cipher
from paymesh.identity.tokens import TokenSigner
from paymesh.kernel.config import Settings
from paymesh.kernel.db import Database

SESSION_COOKIE = "paymesh_session"
CSRF_COOKIE = "paymesh_csrf"


@dataclass
class ProviderState:
    settings: Settings
    database: Database
    cipher: Cipher
    keys: KeyStore
    signer: TokenSigner
    authenticator: Authenticator
    server: Provider

    @classmethod
    def build(cls, settings: Settings, database: Database, revoker: TokenRevoker) -> ProviderState:
        cipher = Cipher(settings.signing_secret.get_secret_value())
        keys = KeyStore(database, cipher, settings.identity)
        signer = TokenSigner(keys, settings)
        authenticator = Authenticator(settings.identity, cipher)
        server = Provider(settings, signer, revoker)
        openid = grants.OpenIDTokens(signer)
        server.authenticator = authenticator
        server.register_grant(
            grants.AuthorizationCodeGrant, [grants.S256CodeChallenge(required=True), openid]
        )
        server.register_grant(grants.RefreshTokenGrant, [openid])
        server.register_grant(grants.ClientCredentialsGrant)
        server.register_grant(grants.PasswordGrant, [openid])
        server.register_endpoint(Revocation)
        server.register_endpoint(Introspection)
        return cls(settings, database, cipher, keys, signer, authenticator, server)

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")

    def exchange(self, request: Request) -> Exchange:
        address = request.client.host if request.client else "unknown"
        exchange = Exchange(self.database, address)
        exchange.values["code_ttl"] = dt.timedelta(
            seconds=self.settings.identity.authorization_code_ttl_seconds
        )
        return exchange

    def request_data(
        self, request: Request, path: str, items: list[tuple[str, str]]
    ) -> RequestData:
        """What Authlib sees. The URI comes from the configured issuer, not the Host header."""
        # Starlette's Headers are case-insensitive, as Authlib expects ("Authorization").
        return RequestData(request.method, f"{self.issuer}{path}", request.headers, items)

    def set_cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/oauth2",
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies,
        )

    def csrf_token(self, request: Request) -> str:
        return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
