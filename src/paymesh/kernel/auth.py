"""Who is calling: one dependency verifies the bearer token and yields a `Caller`.

Tokens are RFC 9068-shaped JWTs (`typ: at+jwt`; `iss`, `sub`, `aud`, `exp`, `iat`, `jti`,
`client_id`, `scope`, `roles`). Until the identity service issues real ones, a development
signer (HS256 with `PAYMESH_SIGNING_SECRET`) mints and verifies them in development; the
identity service's tokens are verified against its JWKS (`kernel/oidc.py`) behind the same
`TokenVerifier` protocol.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from paymesh.kernel.errors import Forbidden, Unauthenticated
from paymesh.kernel.ids import new_id

ROLES = ("customer", "merchant", "ops", "finance", "auditor", "admin", "service")


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    client_id: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None
    expires_at: int | None = None

    @property
    def idempotency_scope(self) -> str:
        return f"{self.client_id or '-'}|{self.subject}"

    def has_any(self, roles: Iterable[str] = (), scopes: Iterable[str] = ()) -> bool:
        return bool(self.roles.intersection(roles) or self.scopes.intersection(scopes))


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Caller: ...


class DevelopmentTokens:
    """HS256 signer and verifier that stands in until the identity service exists."""

    def __init__(self, secret: str, issuer: str, audience: str) -> None:
        self._key = OctKey.import_key(secret.encode())
        self.issuer = issuer
        self.audience = audience
        self._claims = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    def issue(
        self,
        subject: str,
        *,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        client_id: str = "paymesh-dev",
        ttl_seconds: int = 900,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": new_id("tok"),
            "client_id": client_id,
            "scope": " ".join(sorted(scopes)),
            "roles": sorted(roles),
        }
        return jwt.encode({"alg": "HS256", "typ": "at+jwt"}, claims, self._key)

    def verify(self, token: str) -> Caller:
        try:
            decoded = jwt.decode(token, self._key, algorithms=["HS256"])
            if decoded.header.get("typ") not in ("at+jwt", "application/at+jwt"):
                raise Unauthenticated(detail="not an access token")
            self._claims.validate(decoded.claims)
        except (JoseError, ValueError) as error:
            raise Unauthenticated(detail=f"invalid token: {error.__class__.__name__}") from None
        claims = decoded.claims
        roles = claims.get("roles") or []
        return Caller(
            subject=str(claims["sub"]),
            client_id=claims.get("client_id"),
            roles=frozenset(str(role) for role in roles if isinstance(role, str)),
            scopes=frozenset(str(claims.get("scope") or "").split()),
            token_id=claims.get("jti"),
            expires_at=int(claims["exp"]),
        )


class CachedVerifier:
    """Remembers verified tokens until they expire, so a client reusing its access token
    pays for signature checks once. Failures are never cached."""

    def __init__(self, verifier: TokenVerifier, max_entries: int = 10_000) -> None:
        self.verifier = verifier
        self.max_entries = max_entries
        self._verified: dict[str, Caller] = {}

    async def prepare(self, token: str) -> None:
        if token not in self._verified:
            await prepare_verifier(self.verifier, token)

    def verify(self, token: str) -> Caller:
        caller = self._verified.get(token)
        now = time.time()
        if caller is not None and caller.expires_at is not None and caller.expires_at > now:
            return caller
        caller = self.verifier.verify(token)
        if len(self._verified) >= self.max_entries:
            self._verified.clear()
        self._verified[token] = caller
        return caller


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(detail="the Authorization header must be 'Bearer <token>'")
    return token.strip()


def authenticate(request: Request, verifier: TokenVerifier | None = None) -> Caller | None:
    """The verified caller, or None when no token was sent. Cached on the request."""
    cached = getattr(request.state, "caller", None)
    if isinstance(cached, Caller):
        return cached
    token = bearer_token(request)
    if token is None:
        return None
    caller = (verifier or request.app.state.token_verifier).verify(token)
    request.state.caller = caller
    return caller


async def prepare_verifier(verifier: TokenVerifier, token: str) -> None:
    """Give a verifier that needs I/O (a JWKS fetch) its chance before the sync `verify`."""
    prepare = getattr(verifier, "prepare", None)
    if prepare is not None:
        await prepare(token)


async def prepare_request(request: Request) -> None:
    token = bearer_token(request)
    if token is not None and not isinstance(getattr(request.state, "caller", None), Caller):
        await prepare_verifier(request.app.state.token_verifier, token)


async def verified_caller(request: Request) -> Caller | None:
    """The verified caller of `request` (signature, claims and revocation checked), None
    when no token was sent; raises `Unauthenticated` for a bad or revoked token. Cached on
    the request. Every path that authenticates goes through here."""
    await prepare_request(request)
    return authenticate(request)


async def current_caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller, or 401."""
    caller = await verified_caller(request)
    if caller is None:
        raise Unauthenticated()
    return caller


def require(
    *, roles: Iterable[str] = (), scopes: Iterable[str] = ()
) -> Callable[[Request], Awaitable[Caller]]:
    """Dependency factory: the caller must hold one of `roles` or one of `scopes`."""
    wanted_roles = frozenset(roles)
    wanted_scopes = frozenset(scopes)

    async def dependency(request: Request) -> Caller:
        return check_access(await current_caller(request), wanted_roles, wanted_scopes)

    return dependency


def check_access(caller: Caller, roles: frozenset[str], scopes: frozenset[str]) -> Caller:
    """The caller, if it holds one of `roles` or one of `scopes`; otherwise 403."""
    if not caller.has_any(roles, scopes):
        raise Forbidden(detail=f"requires one of roles {sorted(roles)} or scopes {sorted(scopes)}")
    return caller
