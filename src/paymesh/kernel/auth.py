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
from enum import StrEnum
from typing import Any, Protocol

from fastapi import Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from paymesh.kernel.errors import Forbidden, Unauthenticated
from paymesh.kernel.ids import new_id
from paymesh.kernel.revocation import RevocationRegistry


class RateLimitTier(StrEnum):
    """A client application's subscription tier, which the API gateway rate-limits by
    (WSO2 API Manager's tiers): `unlimited`, `gold` (5,000 requests a minute), `silver`
    (2,000), `bronze` (1,000). The gateway owns the numbers; identity keeps each client's
    tier and writes it into the `tier` claim of the access tokens it issues; a trusted
    external issuer's clients take the tier configured for it."""

    UNLIMITED = "unlimited"
    GOLD = "gold"
    SILVER = "silver"
    BRONZE = "bronze"


DEFAULT_TIER = RateLimitTier.BRONZE
"""The rate-limit tier of a Paymesh token without a `tier` claim."""

ROLES = ("customer", "merchant", "ops", "finance", "compliance", "auditor", "admin", "service")


OPENID_SCOPES = frozenset({"openid", "profile", "email", "phone", "address", "offline_access"})
"""Scopes about the user's own identity claims, not about an API; any user may consent."""

SCOPES_BY_ROLE: dict[str, frozenset[str]] = {
    "admin": frozenset({"ledger", "ledger:read", "ledger:write", "identity:admin"}),
    "finance": frozenset({"ledger", "ledger:read", "ledger:write"}),
    "auditor": frozenset({"ledger:read"}),
    "service": frozenset({"ledger", "ledger:read", "ledger:write"}),
    "ops": frozenset(),
    "customer": frozenset(),
    "merchant": frozenset(),
}
"""The API scopes a user's roles let a client act with on the user's behalf. A delegated
token carries at most these (identity narrows what a client asks for at issue), and a
service accepts a delegated token only when the user holds one of the route's roles."""


def scopes_granted_by(roles: Iterable[str]) -> frozenset[str]:
    granted: set[str] = set(OPENID_SCOPES)
    for role in roles:
        granted |= SCOPES_BY_ROLE.get(role, frozenset())
    return frozenset(granted)


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    client_id: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None
    expires_at: int | None = None
    issued_at: float = 0.0
    session_id: str | None = None
    family_id: str | None = None
    issuer: str | None = None
    """`iss` of the verified token: Paymesh identity or a trusted external provider."""
    tier: str | None = None
    """Rate-limit tier: identity's `tier` claim, or the trusted issuer's configured one."""

    @property
    def idempotency_scope(self) -> str:
        return f"{self.client_id or '-'}|{self.subject}"

    @property
    def delegated(self) -> bool:
        """A user's token used by a client (not a client acting as itself, RFC 9068 2.2:
        `sub` is the client id for client-credentials tokens)."""
        return self.subject != self.client_id

    @property
    def revocation_keys(self) -> list[str]:
        keys = [f"subject:{self.subject}"]
        if self.client_id:
            keys.append(f"client:{self.client_id}")
        if self.token_id:
            keys.append(f"token:{self.token_id}")
        if self.session_id:
            keys.append(f"session:{self.session_id}")
        if self.family_id:
            keys.append(f"family:{self.family_id}")
        return keys

    def has_any(self, roles: Iterable[str] = (), scopes: Iterable[str] = ()) -> bool:
        """May this caller use a route open to `roles` or `scopes`? A client acting as
        itself needs one of either. A delegated token needs one of the user's roles, and
        when the route names scopes, one of those too: neither alone is enough."""
        wanted_scopes = frozenset(scopes)
        holds_role = bool(self.roles.intersection(roles))
        holds_scope = bool(self.scopes.intersection(wanted_scopes))
        if self.delegated:
            return holds_role and (holds_scope or not wanted_scopes)
        return holds_role or holds_scope


def caller_from_claims(claims: dict[str, Any]) -> Caller:
    """The caller a verified RFC 9068 access token's claims describe."""
    roles = claims.get("roles") or []
    issued_at = claims.get("iat")
    session_id = claims.get("sid")
    family_id = claims.get("refresh_family")
    client_id = claims.get("client_id")
    issuer, tier = claims.get("iss"), claims.get("tier")
    return Caller(
        subject=str(claims["sub"]),
        client_id=str(client_id) if client_id is not None else None,
        roles=frozenset(role for role in roles if isinstance(role, str)),
        scopes=frozenset(str(claims.get("scope") or "").split()),
        token_id=str(claims["jti"]) if claims.get("jti") is not None else None,
        expires_at=int(claims["exp"]),
        issued_at=float(issued_at) if isinstance(issued_at, int | float) else 0.0,
        session_id=session_id if isinstance(session_id, str) else None,
        family_id=family_id if isinstance(family_id, str) else None,
        issuer=issuer if isinstance(issuer, str) else None,
        tier=tier if isinstance(tier, str) and tier else DEFAULT_TIER,
    )


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
        scopes: Iterable[str] | None = None,
        client_id: str = "paymesh-dev",
        ttl_seconds: int = 900,
    ) -> str:
        """A token for `subject`; without `scopes`, the API scopes its roles grant."""
        roles = list(roles)
        if scopes is None:
            scopes = scopes_granted_by(roles) - OPENID_SCOPES
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
        return caller_from_claims(dict(decoded.claims))


class CachedVerifier:
    """The one verification path: signature and claims (remembered per token until it
    expires, so a client reusing its access token pays for them once; failures are never
    cached), then, on every request, the revocations in force."""

    def __init__(
        self,
        verifier: TokenVerifier,
        max_entries: int = 10_000,
        revocations: RevocationRegistry | None = None,
    ) -> None:
        self.verifier = verifier
        self.max_entries = max_entries
        self.revocations = revocations if revocations is not None else RevocationRegistry()
        self._verified: dict[str, Caller] = {}

    async def prepare(self, token: str) -> None:
        if token not in self._verified:
            await prepare_verifier(self.verifier, token)

    def verify(self, token: str) -> Caller:
        caller = self._verified.get(token)
        now = time.time()
        if caller is None or caller.expires_at is None or caller.expires_at <= now:
            caller = self.verifier.verify(token)
            if len(self._verified) >= self.max_entries:
                self._verified.clear()
            self._verified[token] = caller
        self.revocations.check(caller)
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
