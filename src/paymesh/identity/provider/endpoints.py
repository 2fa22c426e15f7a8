"""Token revocation (RFC 7009) and introspection (RFC 7662) on Authlib's endpoints.

Access tokens are JWTs: revoking one records its `jti` until it would have expired, and
introspection reports it inactive from then on. Revoking a refresh token ends its family.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from paymesh.identity import repository, revocation
from paymesh.identity.provider.exchange import Exchange, current
from paymesh.identity.provider.models import AccessModel, ClientModel, RefreshModel
from paymesh.identity.revocation import revoker_of
from paymesh.identity.security import secret_hash
from paymesh.identity.tokens import TokenSigner
from paymesh.kernel.auth import caller_from_claims
from paymesh.kernel.db import utcnow
from paymesh.kernel.errors import Unauthenticated

Token = AccessModel | RefreshModel


async def find_token(exchange: Exchange, signer: TokenSigner, value: str) -> Token | None:
    session = await exchange.session()
    if value.count(".") == 2:
        try:
            claims = signer.verify_access_token(value)
        except Unauthenticated:
            return None
        revoked = await repository.access_token_revoked(session, str(claims.get("jti")))
        try:
            revoker_of(session).registry.check(caller_from_claims(claims))
        except Unauthenticated:
            revoked = True
        return AccessModel(claims, revoked=revoked)
    row = await repository.get_refresh_token(session, secret_hash(value[:512]))
    return RefreshModel(row) if row is not None else None


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        exchange = current()
        return exchange.run(find_token(exchange, self.server.signer, token_string))

    def revoke_token(self, token: Token, request: Any) -> None:
        exchange = current()
        exchange.run(_revoke(exchange, token))


async def _revoke(exchange: Exchange, token: Token) -> None:
    session = await exchange.session()
    now = utcnow()
    if isinstance(token, RefreshModel):
        await repository.revoke_family(session, token.row.family_id, now)
        await revocation.revoke(session, "family", token.row.family_id)
        return
    expires_at = dt.datetime.fromtimestamp(int(token.claims["exp"]), dt.UTC)
    await repository.revoke_access_token(session, str(token.claims["jti"]), expires_at, now)
    await revocation.revoke(
        session, "token", str(token.claims["jti"]), expires_at=float(token.claims["exp"])
    )


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        exchange = current()
        return exchange.run(find_token(exchange, self.server.signer, token_string))

    def check_permission(self, token: Token, client: ClientModel, request: Any) -> bool:
        """A client may introspect its own tokens; service accounts any token."""
        return bool(token.check_client(client) or "service" in client.row.roles)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        if isinstance(token, AccessModel):
            claims = token.claims
            body: dict[str, Any] = {
                key: claims[key]
                for key in ("scope", "client_id", "sub", "aud", "iss", "exp", "jti", "tier")
                if key in claims
            }
            if "iat" in claims:
                body["iat"] = int(claims["iat"])  # RFC 7662: an integer timestamp
            return {
                "active": True,
                "token_type": "Bearer",
                "roles": claims.get("roles", []),
                **body,
            }
        row = token.row
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": row.scope,
            "client_id": row.client_id,
            "sub": row.user_id,
            "exp": int(row.expires_at.timestamp()),
            "iat": int(row.created_at.timestamp()),
        }
