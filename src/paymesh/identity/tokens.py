"""The tokens identity signs: RFC 9068 access tokens and OpenID Connect ID tokens.

Besides RFC 9068's claims, an access token carries `roles`, the client's `tier` (its
rate-limit tier, `paymesh.identity.schemas.RateLimitTier`, which the API gateway limits
by), and, when they apply, `auth_time`, `sid` and `refresh_family`. Claims are fixed when
the token is signed: a change to the user or client shows in the next token issued."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy.util import await_
from sqlalchemy.util.concurrency import in_greenlet

from paymesh.identity.keys import KeyStore
from paymesh.kernel.config import Settings
from paymesh.kernel.errors import Unauthenticated
from paymesh.kernel.ids import new_id
from paymesh.kernel.oidc import UnknownSigningKey, decode_access_token


def half_hash(value: str) -> str:
    """`at_hash` for RS256/ES256 (both SHA-256): base64url of the left half of the hash."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


@dataclass(frozen=True)
class AccessTokenRequest:
    subject: str
    client_id: str
    scope: str
    roles: Iterable[str]
    rate_limit_tier: str
    """The client's tier when the token is issued: the `tier` claim."""
    audience: list[str]
    auth_time: int | None = None
    session_id: str | None = None
    refresh_family: str | None = None
    not_before: float = 0.0
    """The token is issued no earlier: a revocation stamp covering the subject or client
    that still lies ahead."""


SIGNING_THREADS = 2
"""Threads that sign tokens for the OAuth2 endpoints (`TokenSigner._sign`)."""


class TokenSigner:
    def __init__(self, keys: KeyStore, settings: Settings) -> None:
        self.keys = keys
        self.settings = settings
        self.issuer = settings.issuer
        self._signing: ThreadPoolExecutor | None = None

    def _sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        key = self.keys.signing_key()
        header = {**header, "alg": key.algorithm, "kid": key.kid}

        def sign() -> str:
            return jwt.encode(header, claims, key.private, algorithms=[key.algorithm])

        if not in_greenlet():
            return sign()
        # Under an OAuth2 exchange (Authlib's code, run by `Exchange.call`): OpenSSL
        # releases the GIL for the RSA operation, most of an RS256 token's cost (about
        # 0.27 ms), so on a thread of its own the event loop serves other requests
        # meanwhile: +15 % tokens a second on the token endpoint (bench/kernel), for a
        # thread hand-off each.
        if self._signing is None:
            self._signing = ThreadPoolExecutor(SIGNING_THREADS, "paymesh-token-signing")
        signed: str = await_(asyncio.get_running_loop().run_in_executor(self._signing, sign))
        return signed

    def close(self) -> None:
        """Stop the signing threads (identity's shutdown); signing starts them again."""
        signing, self._signing = self._signing, None
        if signing is not None:
            signing.shutdown(wait=False, cancel_futures=True)

    def access_token(self, request: AccessTokenRequest) -> tuple[str, dict[str, Any]]:
        # `iat` to the millisecond (a NumericDate may be fractional, RFC 7519 2): a token
        # issued after a revocation stamp must compare as later than it.
        issued = max(time.time(), request.not_before)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": request.subject,
            "aud": request.audience[0] if len(request.audience) == 1 else request.audience,
            "iat": math.ceil(issued * 1000) / 1000,  # never before a stamp it must follow
            "exp": int(issued) + self.settings.identity.access_token_ttl_seconds,
            "jti": new_id("at"),
            "client_id": request.client_id,
            "scope": request.scope,
            "roles": sorted(set(request.roles)),
            "tier": request.rate_limit_tier,
        }
        if request.auth_time is not None:
            claims["auth_time"] = request.auth_time
        if request.session_id is not None:
            claims["sid"] = request.session_id
        if request.refresh_family is not None:
            claims["refresh_family"] = request.refresh_family
        return self._sign({"typ": "at+jwt"}, claims), claims

    def id_token(
        self,
        *,
        client_id: str,
        user_claims: dict[str, Any],
        access_token: str | None,
        nonce: str | None,
        auth_time: int | None,
        session_id: str | None,
        amr: list[str],
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            **user_claims,
            "iss": self.issuer,
            "aud": client_id,
            "azp": client_id,
            "iat": now,
            "exp": now + self.settings.identity.id_token_ttl_seconds,
        }
        if auth_time is not None:
            claims["auth_time"] = auth_time
        if nonce:
            claims["nonce"] = nonce
        if access_token:
            claims["at_hash"] = half_hash(access_token)
        if session_id:
            claims["sid"] = session_id
        if amr:
            claims["amr"] = amr
        return self._sign({"typ": "JWT"}, claims)

    def id_token_client(self, token: str) -> str | None:
        """The client an ID token this issuer signed was for (expired ones too, as
        `id_token_hint` allows), or None."""
        try:
            decoded = jwt.decode(token, self.keys.key_set(), algorithms=["RS256", "ES256"])
        except (JoseError, ValueError):
            return None
        claims = decoded.claims
        audience = claims.get("aud")
        if claims.get("iss") != self.issuer or not isinstance(audience, str):
            return None
        return audience

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """Claims of an access token this issuer signed, whatever its audience."""
        try:
            return decode_access_token(
                token, self.keys.key_set(), issuer=self.issuer, audience=None
            )
        except UnknownSigningKey:
            raise Unauthenticated(detail="invalid token: unknown signing key") from None
