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
import time
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
from paymesh.identity.revocation import CLIENT_RECORD_MAX_AGE_SECONDS, TokenRevoker
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
from paymesh.kernel.revocation import RevocationRegistry

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


class ClientCache:
    """Clients' registrations as last read, kept between grants: every service call starts
    with a client credentials grant, and reading its client was a tenth of its cost.

    Invalidation is explicit, not a time-out: each change to a client (status, secret, tier,
    deletion) records a `client_record` notice (`revocation.client_changed`) in the
    transaction that makes it. At commit the notice is in force in this process; the
    others get it through the revocation feed within its sync interval, as they get a
    revoked token. A copy read before the notice's stamp is read again. A copy is also
    read again once it is `CLIENT_RECORD_MAX_AGE_SECONDS` old, the least a notice lasts
    beyond its stamp: a notice forgotten cannot leave a stale copy behind. Only clients
    that exist, or are the platform's own services, are kept (an unknown id is read every
    time), at most `LIMIT` of them; registering a client is a change too."""

    LIMIT = 10_000

    def __init__(self, registry: RevocationRegistry) -> None:
        self.registry = registry
        self._copies: dict[str, tuple[ClientModel | None, float]] = {}

    def get(self, client_id: str) -> tuple[ClientModel | None] | None:
        """`(client,)` as kept (`(None,)`: registered but not active), or None when
        there is no fresh copy."""
        found = self._copies.get(client_id)
        if found is None:
            return None
        client, read_at = found
        if (
            time.time() - read_at > CLIENT_RECORD_MAX_AGE_SECONDS
            or self.registry.not_before("client_record", client_id) > read_at
        ):
            del self._copies[client_id]
            return None
        return (client,)

    def keep(self, client_id: str, client: ClientModel | None, read_at: float) -> None:
        """Keep what a read that started at `read_at` found."""
        if len(self._copies) >= self.LIMIT:
            self._copies.clear()
        self._copies[client_id] = (client, read_at)


class Provider(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, settings: Settings, signer: TokenSigner, revoker: TokenRevoker) -> None:
        super().__init__(scopes_supported=None)
        self.settings = settings
        self.signer = signer
        self.revoker = revoker
        self.clients = ClientCache(revoker.registry)
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
        fields = {name.lower(): value for name, value in headers}  # a later one wins
        if isinstance(body, dict):
            fields["content-type"] = "application/json"
        fields.setdefault("cache-control", "no-store")
        return Response(content=content, status_code=status, headers=fields)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    # --- clients ---------------------------------------------------------------------------

    def query_client(self, client_id: str) -> ClientModel | None:
        exchange = current()
        key = ("client", client_id)
        if key not in exchange.values:
            kept = self.clients.get(client_id)
            exchange.values[key] = (
                kept[0] if kept is not None else exchange.run(self.load_client(client_id))
            )
        client: ClientModel | None = exchange.values[key]
        return client

    async def load_client(self, client_id: str) -> ClientModel | None:
        client_id = client_id[:128]
        read_at = time.time()  # before the read: a change committed during it is newer
        row = await repository.read_client_record(current().database.reads, client_id)
        if row is not None:
            client = ClientModel(row) if row.status == "active" else None
        else:
            match = PLATFORM_SERVICE_CLIENT.match(client_id)
            if match is None:
                return None
            client = ClientModel(self._builtin_service_client(match.group(1)), builtin=True)
        self.clients.keep(client_id, client, read_at)
        return client

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
