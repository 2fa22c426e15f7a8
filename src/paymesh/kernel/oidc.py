"""Tokens from an OpenID Connect issuer: verifying RFC 9068 access tokens against the
issuer's JWKS, and getting client-credentials tokens for service-to-service calls.

The JWKS is fetched through a coroutine the composition root supplies (in the embedded
shape, an in-process HTTP call to identity's `/oauth2/jwks`), cached, re-read every
`refresh_seconds` and at once when a token names a key id the cache does not hold.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from paymesh.kernel.auth import Caller, DevelopmentTokens, caller_from_claims
from paymesh.kernel.config import Settings
from paymesh.kernel.errors import ServiceUnavailable, Unauthenticated

log = structlog.get_logger("paymesh.oidc")

ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
CLOCK_SKEW_SECONDS = 30
MAX_FORCED_FETCHES = 20
FORCED_WINDOW_SECONDS = 10.0

JwksFetcher = Callable[[], Awaitable[dict[str, Any]]]


class UnknownSigningKey(Exception):
    """The token names a key id that is not in the key set."""


def token_header(token: str) -> dict[str, Any]:
    try:
        return dict(extract_compact(token.encode()).headers())
    except (JoseError, ValueError) as error:
        raise Unauthenticated(detail=f"invalid token: {error.__class__.__name__}") from None


def decode_access_token(
    token: str, keys: KeySet, *, issuer: str, audience: str | None
) -> dict[str, Any]:
    """The claims of a valid RFC 9068 access token signed by one of `keys`; raises
    `UnknownSigningKey` for a key id not in `keys`, `Unauthenticated` for anything else."""
    header = token_header(token)
    if header.get("typ") not in ACCESS_TOKEN_TYPES:
        raise Unauthenticated(detail="not an access token (typ must be at+jwt)")
    if header.get("alg") not in ASYMMETRIC_ALGORITHMS:
        raise Unauthenticated(detail="unsupported token algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not any(key.kid == kid for key in keys):
        raise UnknownSigningKey(str(kid))
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "exp": {"essential": True},
        "sub": {"essential": True},
    }
    if audience is not None:
        options["aud"] = {"essential": True, "value": audience}
    try:
        decoded = jwt.decode(token, keys, algorithms=list(ASYMMETRIC_ALGORITHMS))
        jwt.JWTClaimsRegistry(leeway=CLOCK_SKEW_SECONDS, **options).validate(decoded.claims)
    except (JoseError, ValueError) as error:
        raise Unauthenticated(detail=f"invalid token: {error.__class__.__name__}") from None
    return dict(decoded.claims)


class JwksVerifier:
    """Verifies access tokens from one issuer against its published JWKS."""

    def __init__(
        self,
        fetch: JwksFetcher,
        *,
        issuer: str,
        audience: str,
        refresh_seconds: float = 300.0,
        min_refetch_seconds: float = 5.0,
    ) -> None:
        self._fetch = fetch
        self.issuer = issuer
        self.audience = audience
        self.refresh_seconds = refresh_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._missed: set[str] = set()
        self._forced: list[float] = []

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(str(key.kid) for key in self._keys or [])

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the JWKS (at most once per `min_refetch_seconds` unless `force`)."""
        async with self._lock:
            if not force and time.monotonic() - self._fetched_at < self.min_refetch_seconds:
                return
            self._fetched_at = time.monotonic()
            try:
                document = await self._fetch()
                self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except Exception as error:
                log.warning("jwks_fetch_failed", error=error.__class__.__name__)

    async def prepare(self, token: str) -> None:
        """Make sure the key the token names is loaded (async; `verify` is sync). A key id
        seen for the first time forces a fetch (a rotation must work at once); bursts of
        made-up key ids are capped at `MAX_FORCED_FETCHES` per `FORCED_WINDOW_SECONDS`."""
        kid = token_header(token).get("kid")
        if isinstance(kid, str) and kid not in self.kids:
            async with self._lock:
                pass  # a fetch in flight may bring the key
            if kid not in self.kids:
                await self.refresh(force=self._may_force(kid))
                return
        if time.monotonic() - self._fetched_at > self.refresh_seconds:
            await self.refresh()

    def _may_force(self, kid: str) -> bool:
        now = time.monotonic()
        self._forced = [at for at in self._forced if now - at < FORCED_WINDOW_SECONDS]
        if kid in self._missed or len(self._forced) >= MAX_FORCED_FETCHES:
            return False
        if len(self._missed) > 1000:
            self._missed.clear()
        self._missed.add(kid)
        self._forced.append(now)
        return True

    def verify(self, token: str) -> Caller:
        if self._keys is None:
            self._refresh_soon()
            raise ServiceUnavailable(detail="the identity signing keys are not loaded yet")
        try:
            claims = decode_access_token(
                token, self._keys, issuer=self.issuer, audience=self.audience
            )
        except UnknownSigningKey:
            self._refresh_soon()
            raise Unauthenticated(detail="invalid token: unknown signing key") from None
        return caller_from_claims(claims)

    def _refresh_soon(self) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self.refresh())
        except RuntimeError:
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class CompositeVerifier:
    """Identity's tokens (asymmetric, by JWKS) and, outside production, development tokens
    (HS256 with the platform secret). The header's `alg` picks the verifier."""

    def __init__(self, jwks: JwksVerifier | None, development: DevelopmentTokens | None) -> None:
        self.jwks = jwks
        self.development = development

    async def prepare(self, token: str) -> None:
        if self.jwks is not None and token_header(token).get("alg") != "HS256":
            await self.jwks.prepare(token)

    def verify(self, token: str) -> Caller:
        algorithm = token_header(token).get("alg")
        if algorithm == "HS256":
            if self.development is None:
                raise Unauthenticated(detail="development tokens are not accepted here")
            return self.development.verify(token)
        if self.jwks is None:
            raise Unauthenticated(detail="no identity issuer is configured")
        return self.jwks.verify(token)


# --- service accounts --------------------------------------------------------------------


def service_client_id(service: str) -> str:
    return f"service-{service}"


def service_client_secret(settings: Settings, service: str) -> str:
    """The service's secret at identity: `PAYMESH_<SERVICE>_CLIENT_SECRET`, or derived from
    the platform signing secret, which every process of one deployment shares."""
    configured = settings.service(service).client_secret
    if configured is not None:
        return configured.get_secret_value()
    digest = hmac.new(
        settings.signing_secret.get_secret_value().encode(),
        f"paymesh-service-client:{service}".encode(),
        hashlib.sha256,
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class ClientCredentialsTokens:
    """Access tokens for one client from a token endpoint (client_credentials grant),
    cached per scope until shortly before they expire."""

    def __init__(
        self,
        http: Callable[[], httpx.AsyncClient],
        token_path: str,
        client_id: str,
        client_secret: str,
        margin_seconds: float = 30.0,
    ) -> None:
        self._http = http
        self._token_path = token_path
        self._client_id = client_id
        self._client_secret = client_secret
        self._margin_seconds = margin_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    async def token(self, scopes: Iterable[str] = ()) -> str:
        scope = " ".join(sorted(scopes))
        cached = self._cache.get(scope)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        async with self._lock:
            cached = self._cache.get(scope)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            token, expires_in = await self._request(scope)
            self._cache[scope] = (token, time.monotonic() + expires_in - self._margin_seconds)
            return token

    async def _request(self, scope: str) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        try:
            async with self._http() as client:
                response = await client.post(
                    self._token_path, data=form, auth=(self._client_id, self._client_secret)
                )
        except httpx.TransportError as error:
            raise ServiceUnavailable(detail=f"token endpoint: {error.__class__.__name__}") from None
        if response.status_code != 200:
            raise ServiceUnavailable(
                detail=f"token endpoint refused {self._client_id}: {response.status_code}"
            )
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 300))
