"""Authlib's `AuthorizationServer` on Starlette: requests read up front, hooks answered
from the database through the `Exchange`, tokens signed by identity's keys.

Hardening over Authlib's defaults: the request URI it checks is built from the configured
issuer (never from a Host header); its debug logs (which print tokens) are silenced;
scopes are checked against the client's allowed scopes for every grant; clients must
send `redirect_uri` and it must match exactly; confidential clients can only authenticate
with their secret and public clients only by PKCE.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from starlette.responses import Response

from paymesh.identity import models as tables
from paymesh.identity import repository
from paymesh.identity.authentication import Authenticator
from paymesh.identity.provider.exchange import current
from paymesh.identity.provider.models import ClientModel, UserModel
from paymesh.identity.revocation import TokenRevoker
from paymesh.identity.schemas import RateLimitTier
from paymesh.identity.security import new_secret, secret_hash
from paymesh.identity.service import PLATFORM_SERVICE_CLIENT
from paymesh.identity.tokens import AccessTokenRequest, TokenSigner
from paymesh.kernel.auth import scopes_granted_by
from paymesh.kernel.config import Settings
from paymesh.kernel.db import utcnow
from paymesh.kernel.ids import new_id
from paymesh.kernel.jsonutil import dumps
from paymesh.kernel.oidc import service_client_id, service_client_secret

# Authlib logs issued tokens at DEBUG; they must never reach a log, whatever the level.
logging.getLogger("authlib").setLevel(logging.WARNING)


@dataclass(frozen=True)
class RequestData:
    """An HTTP request as Authlib needs it, read before Authlib runs."""

    method: str
    uri: str
    headers: Mapping[str, str]
    items: list[tuple[str, str]]


class Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, data: RequestData) -> None:
        super().__init__(method=data.method, uri=data.uri, headers=data.headers)
        self.payload = Payload(data.items)

    @property
    def args(self) -> dict[str, str]:
        return dict(self.payload.data)

    @property
    def form(self) -> dict[str, str]:
        return dict(self.payload.data)


def delegated_scope(scope: str | None, roles: list[str]) -> str:
    """What a client may do for a user: the scopes it asked for (already checked against
    what the client may ask) that the user's roles grant. Narrowed, not refused (RFC 6749
    3.3); the token response names the scopes granted."""
    granted = scopes_granted_by(roles)
    return " ".join(item for item in (scope or "").split() if item in granted)


class Provider(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, settings: Settings, signer: TokenSigner, revoker: TokenRevoker) -> None:
        super().__init__(scopes_supported=None)
        self.settings = settings
        self.signer = signer
        self.revoker = revoker
        self.authenticator: Authenticator | None = None
        self.register_token_generator("default", self._generate_token)

    # --- the framework adapter -----------------------------------------------------------

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return StarletteOAuth2Request(request)

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("identity takes no JSON requests on OAuth2 endpoints")

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        content = dumps(body) if isinstance(body, dict) else (body or b"")
        response = Response(content=content, status_code=status)
        for name, value in headers:
            response.headers[name] = value
        if isinstance(body, dict):
            response.headers["content-type"] = "application/json"
        response.headers.setdefault("cache-control", "no-store")
        return response

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    # --- clients ---------------------------------------------------------------------------

    def query_client(self, client_id: str) -> ClientModel | None:
        exchange = current()
        key = ("client", client_id)
        if key not in exchange.values:
            exchange.values[key] = exchange.run(self.load_client(client_id))
        client: ClientModel | None = exchange.values[key]
        return client

    async def load_client(self, client_id: str) -> ClientModel | None:
        row = await repository.read_client_record(current().database.reads, client_id[:128])
        if row is not None:
            return ClientModel(row) if row.status == "active" else None
        match = PLATFORM_SERVICE_CLIENT.match(client_id)
        if match is None:
            return None
        return ClientModel(self._builtin_service_client(match.group(1)), builtin=True)

    def _builtin_service_client(self, service: str) -> tables.Client:
        """Every Paymesh service is a client without registration: `service-<name>`, with
        a secret derived from the platform signing secret (see kernel.oidc), and never
        rate-limited by the gateway."""
        now = utcnow()
        return tables.Client(
            id=service_client_id(service),
            name=f"Paymesh {service} service",
            secret_hash=secret_hash(service_client_secret(self.settings, service)),
            redirect_uris=[],
            post_logout_redirect_uris=[],
            grant_types=["client_credentials"],
            scopes=[],
            roles=["service"],
            audience=[],
            first_party=True,
            password_grant_allowed=False,
            rate_limit_tier=RateLimitTier.UNLIMITED.value,
            status="active",
            created_at=now,
            updated_at=now,
        )

    # --- tokens ----------------------------------------------------------------------------

    def _generate_token(
        self,
        grant_type: str,
        client: ClientModel,
        user: UserModel | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        identity = self.settings.identity
        subject = user.row.id if user else client.client_id
        if user is not None:
            scope = delegated_scope(scope, user.roles)
        refresh = (
            user is not None and include_refresh_token and client.check_grant_type("refresh_token")
        )
        family_id = None
        if refresh:
            # Known before the access token is signed, so it can name its family: revoking
            # the family (reuse, logout, RFC 7009) then ends this access token too.
            exchange = current()
            family_id = exchange.values.get("family_id") or new_id("rtf")
            exchange.values["family_id"] = family_id
        request = AccessTokenRequest(
            subject=subject,
            client_id=client.client_id,
            scope=scope or "",
            roles=user.roles if user else client.row.roles,
            # Read from the client row loaded for this exchange: a tier set by an admin
            # applies from the next token on, whatever the grant (refresh included).
            rate_limit_tier=client.row.rate_limit_tier,
            audience=list(client.row.audience) or [self.settings.token_audience],
            auth_time=int(user.auth_time.timestamp()) if user and user.auth_time else None,
            session_id=user.session_id if user else None,
            refresh_family=family_id,
            not_before=self.revoker.stamp_covering(subject, client.client_id),
        )
        access_token, _claims = self.signer.access_token(request)
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": identity.access_token_ttl_seconds,
            "scope": scope or "",
        }
        if refresh:
            token["refresh_token"] = new_secret()
        return token

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Store the refresh token (hashed). Access tokens are JWTs and are not stored."""
        refresh = token.get("refresh_token")
        user: UserModel | None = request.user
        if not refresh or user is None:
            return
        exchange = current()
        family_id = exchange.values.get("family_id") or new_id("rtf")
        exchange.values["family_id"] = family_id
        now = utcnow()
        row = tables.RefreshToken(
            id=new_id("rt"),
            token_hash=secret_hash(refresh),
            family_id=family_id,
            client_id=request.client.get_client_id(),
            user_id=user.row.id,
            session_id=user.session_id,
            scope=token.get("scope") or "",
            auth_time=user.auth_time or now,
            amr=list(user.amr),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=self.settings.identity.refresh_token_ttl_seconds),
        )

        async def insert() -> None:
            session = await exchange.session()
            session.add(row)
            await session.flush()

        exchange.run(insert())
