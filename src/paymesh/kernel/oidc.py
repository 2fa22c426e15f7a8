"""Tokens from OpenID Connect issuers: verifying access tokens against an issuer's JWKS,
and getting client-credentials tokens for service-to-service calls.

Paymesh identity's RFC 9068 access tokens are checked by `JwksVerifier`, whose JWKS comes
through a coroutine the composition root supplies (in the embedded shape, an in-process
HTTP call to identity's `/oauth2/jwks`). The gateway also trusts external providers
(Keycloak, WSO2 IS, ... listed in `settings.gateway.issuers`): `TrustedIssuerVerifier`
finds each one's JWKS through its discovery document, and `MultiIssuerVerifier` sends
every token to the verifier of its `iss`. Every JWKS is cached (`JwksCache`), re-read
every `refresh_seconds` and at once when a token names a key id the cache does not hold.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

import httpx
import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from paymesh.kernel.auth import (
    DEFAULT_TIER,
    Caller,
    DevelopmentTokens,
    caller_from_claims,
    prepare_verifier,
)
from paymesh.kernel.config import Settings, TrustedIssuerSettings
from paymesh.kernel.errors import ServiceUnavailable, Unauthenticated
from paymesh.kernel.http import shared_tls_context

log = structlog.get_logger("paymesh.oidc")

ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
"""What Paymesh identity signs with."""
SIGNATURE_ALGORITHMS = ("RS256", "ES256", "PS256")
"""Everything a key from a JWKS may have signed: never `none`, never HS* (an HS256 token
"signed" with a published public key as the HMAC secret is the classic forgery)."""
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
PLAIN_TOKEN_TYPES = (None, "jwt", "application/jwt")
"""`typ` of providers that do not mark access tokens (Keycloak and WSO2 IS send JWT)."""
NOT_ACCESS_TOKENS = ("ID", "Refresh", "Logout")
"""Keycloak's `typ` claim of its other tokens (its access tokens say Bearer)."""
CLOCK_SKEW_SECONDS = 30
MAX_FORCED_FETCHES = 20
FORCED_WINDOW_SECONDS = 10.0

JwksFetcher = Callable[[], Awaitable[dict[str, Any]]]
HttpClientFactory = Callable[[], httpx.AsyncClient]


class UnknownSigningKey(Exception):
    """The token names a key id that is not in the key set."""


def token_header(token: str) -> dict[str, Any]:
    try:
        return dict(extract_compact(token.encode()).headers())
    except (JoseError, ValueError) as error:
        raise Unauthenticated(detail=f"invalid token: {error.__class__.__name__}") from None


def unverified_issuer(token: str) -> str:
    """The `iss` a token claims, before anything about it is checked: only to pick the
    verifier, which then checks it again with the signature."""
    try:
        payload = extract_compact(token.encode()).payload
        issuer = json.loads(payload).get("iss")
    except (JoseError, ValueError, AttributeError, RecursionError) as error:
        raise Unauthenticated(detail=f"invalid token: {error.__class__.__name__}") from None
    if not isinstance(issuer, str):
        raise Unauthenticated(detail="invalid token: no issuer")
    return issuer


def decode_access_token(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    audience: str | None,
    algorithms: Collection[str] = ASYMMETRIC_ALGORITHMS,
    require_at_jwt: bool = True,
    require_subject: bool = True,
) -> dict[str, Any]:
    """The claims of a valid access token signed by the key of `keys` its `kid` names;
    raises `UnknownSigningKey` for a key id not in `keys`, `Unauthenticated` for anything
    else. `algorithms` is narrowed to `SIGNATURE_ALGORITHMS` whatever the caller asks."""
    header = token_header(token)
    token_type = header.get("typ")
    token_type = token_type.lower() if isinstance(token_type, str) else token_type
    if token_type not in ACCESS_TOKEN_TYPES and (
        require_at_jwt or token_type not in PLAIN_TOKEN_TYPES
    ):
        raise Unauthenticated(detail="not an access token (typ must be at+jwt)")
    allowed = [algorithm for algorithm in algorithms if algorithm in SIGNATURE_ALGORITHMS]
    if header.get("alg") not in allowed:
        raise Unauthenticated(detail="unsupported token algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise Unauthenticated(detail="invalid token: no key id")
    if not any(key.kid == kid for key in keys):
        raise UnknownSigningKey(kid)
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "exp": {"essential": True},
    }
    if require_subject:
        options["sub"] = {"essential": True}
    if audience is not None:
        options["aud"] = {"essential": True, "value": audience}
    try:
        decoded = jwt.decode(token, keys, algorithms=allowed)
        jwt.JWTClaimsRegistry(leeway=CLOCK_SKEW_SECONDS, **options).validate(decoded.claims)
    except (JoseError, ValueError) as error:
        # The claim at fault helps the client's developer; the signature's fault does not.
        reason = getattr(error, "description", "") if "claim" in str(error) else ""
        detail = f"invalid token: {error.__class__.__name__}" + (f" ({reason})" if reason else "")
        raise Unauthenticated(detail=detail) from None
    if not require_at_jwt and decoded.claims.get("typ") in NOT_ACCESS_TOKENS:
        raise Unauthenticated(detail="not an access token")
    return dict(decoded.claims)


class JwksCache:
    """One issuer's JWKS, read through `fetch`: cached, re-read every `refresh_seconds`,
    and at once (at most once per `min_refetch_seconds` otherwise) for a new key id."""

    def __init__(
        self,
        fetch: JwksFetcher,
        *,
        name: str,
        refresh_seconds: float = 300.0,
        min_refetch_seconds: float = 5.0,
    ) -> None:
        self._fetch = fetch
        self.name = name
        self.refresh_seconds = refresh_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self.keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._missed: set[str] = set()
        self._forced: list[float] = []

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(str(key.kid) for key in self.keys or [])

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the JWKS (at most once per `min_refetch_seconds` unless `force`); a
        failed read keeps the keys already loaded."""
        async with self._lock:
            if not force and time.monotonic() - self._fetched_at < self.min_refetch_seconds:
                return
            self._fetched_at = time.monotonic()
            try:
                document = await self._fetch()
                self.keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except Exception as error:
                log.warning("jwks_fetch_failed", issuer=self.name, error=repr(error)[:200])

    async def prepare(self, token: str) -> None:
        """Make sure the key the token names is loaded (async; verifying is sync). A key id
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

    def claims(self, token: str, **policy: Any) -> dict[str, Any]:
        """`decode_access_token` against these keys (503 while none are loaded)."""
        if self.keys is None:
            self.refresh_soon()
            raise ServiceUnavailable(detail=f"the signing keys of {self.name} are not loaded yet")
        try:
            return decode_access_token(token, self.keys, **policy)
        except UnknownSigningKey:
            self.refresh_soon()
            raise Unauthenticated(detail="invalid token: unknown signing key") from None

    def refresh_soon(self) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self.refresh())
        except RuntimeError:
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class JwksVerifier:
    """Verifies Paymesh identity's access tokens against its published JWKS."""

    def __init__(
        self,
        fetch: JwksFetcher,
        *,
        issuer: str,
        audience: str,
        refresh_seconds: float = 300.0,
        min_refetch_seconds: float = 5.0,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = JwksCache(
            fetch,
            name=issuer,
            refresh_seconds=refresh_seconds,
            min_refetch_seconds=min_refetch_seconds,
        )

    @property
    def kids(self) -> frozenset[str]:
        return self.keys.kids

    async def refresh(self, *, force: bool = False) -> None:
        await self.keys.refresh(force=force)

    async def prepare(self, token: str) -> None:
        await self.keys.prepare(token)

    def verify(self, token: str) -> Caller:
        """The caller; its tier is the token's `tier` claim (bronze without one)."""
        return caller_from_claims(
            self.keys.claims(token, issuer=self.issuer, audience=self.audience)
        )


class CompositeVerifier:
    """Identity's tokens (asymmetric, by JWKS) and, outside production, development tokens
    (HS256 with the platform secret). The header's `alg` picks the verifier."""

    def __init__(self, jwks: JwksVerifier | None, development: DevelopmentTokens | None) -> None:
        self.jwks = jwks
        self.development = development

    @property
    def issuers(self) -> frozenset[str]:
        """The `iss` of every token this verifier may accept."""
        verifiers = (self.jwks, self.development)
        return frozenset(verifier.issuer for verifier in verifiers if verifier is not None)

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


# --- external OpenID providers ------------------------------------------------------------


class OpenIdDiscovery:
    """An OpenID provider's JWKS, found through its discovery document (OpenID Connect
    Discovery 1.0), whose `issuer` must be exactly the one configured."""

    def __init__(self, http: HttpClientFactory, issuer: str, discovery_url: str | None) -> None:
        self._http = http
        self.issuer = issuer
        self.discovery_url = discovery_url or (
            issuer.rstrip("/") + "/.well-known/openid-configuration"
        )
        self.jwks_uri: str | None = None

    async def __call__(self) -> dict[str, Any]:
        async with self._http() as client:
            if self.jwks_uri is None:
                self.jwks_uri = await self._discover(client)
            try:
                return await _json_object(client, self.jwks_uri)
            except Exception:
                self.jwks_uri = None  # rediscover next time: the keys may have moved
                raise

    async def _discover(self, client: httpx.AsyncClient) -> str:
        document = await _json_object(client, self.discovery_url)
        if document.get("issuer") != self.issuer:
            raise ValueError(
                f"{self.discovery_url} names issuer {document.get('issuer')!r}, not {self.issuer!r}"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise ValueError(f"{self.discovery_url} has no jwks_uri")
        return jwks_uri


async def _json_object(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url, headers={"accept": "application/json"})
    response.raise_for_status()
    document = response.json()
    if not isinstance(document, dict):
        raise ValueError(f"{url} did not return a JSON object")
    return document


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """The claim at a dotted path (`realm_access.roles`), None where the path breaks."""
    value: Any = claims
    for name in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _strings(value: Any) -> frozenset[str]:
    """The strings of a list claim; one string is one value (never split: a role named
    "not admin" must not become `admin`)."""
    if isinstance(value, str):
        return frozenset({value}) if value else frozenset()
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str) and item)
    return frozenset()


class TrustedIssuerVerifier:
    """Access tokens of one external OpenID provider (`TrustedIssuerSettings`): its keys
    by discovery, its algorithms, audience and claim mapping, its rate-limit tier."""

    def __init__(
        self,
        trusted: TrustedIssuerSettings,
        *,
        http: HttpClientFactory,
        refresh_seconds: float = 300.0,
        min_refetch_seconds: float = 5.0,
    ) -> None:
        self.trusted = trusted
        self.issuer = trusted.issuer
        self.tier = trusted.tier
        self.discovery = OpenIdDiscovery(http, trusted.issuer, trusted.discovery_url)
        self.keys = JwksCache(
            self.discovery,
            name=trusted.issuer,
            refresh_seconds=refresh_seconds,
            min_refetch_seconds=min_refetch_seconds,
        )

    async def prepare(self, token: str) -> None:
        await self.keys.prepare(token)

    def verify(self, token: str) -> Caller:
        trusted = self.trusted
        claims = self.keys.claims(
            token,
            issuer=trusted.issuer,
            audience=trusted.audience,
            algorithms=trusted.algorithms,
            require_at_jwt=trusted.require_at_jwt,
            require_subject=False,
        )
        return self.caller(claims)

    def caller(self, claims: dict[str, Any]) -> Caller:
        """The caller verified claims describe, by this issuer's mapping. The client id is
        the configured claim, else the other of `client_id` / `azp`; a token without `sub`
        is the client acting as itself (RFC 9068 2.2). Identity's own claims (`sid`,
        `refresh_family`, `tier`) mean nothing here and are not read."""
        trusted = self.trusted
        other = "azp" if trusted.client_id_claim == "client_id" else "client_id"
        client_id = claims.get(trusted.client_id_claim) or claims.get(other)
        client_id = client_id if isinstance(client_id, str) else None
        subject = claims.get("sub") or client_id
        if not isinstance(subject, str):
            raise Unauthenticated(detail="invalid token: no subject")
        scope, scp = claims.get("scope"), claims.get("scp")
        issued_at = claims.get("iat")
        token_id = claims.get("jti")
        return Caller(
            subject=subject,
            client_id=client_id,
            roles=_strings(claim_at(claims, trusted.roles_claim)),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else _strings(scp),
            token_id=token_id if isinstance(token_id, str) else None,
            expires_at=int(claims["exp"]),
            issued_at=float(issued_at) if isinstance(issued_at, int | float) else 0.0,
            issuer=self.issuer,
            tier=self.tier,
        )


class MultiIssuerVerifier:
    """The gateway's `TokenVerifier`: each token goes to the verifier of the `iss` it
    claims — Paymesh identity (and development tokens where allowed) or one of the trusted
    external providers — which checks it again with the signature; any other issuer is
    refused (401) without a single fetch. Wrap it in `CachedVerifier` for revocations.

    The accepted caller carries the `issuer` and `tier` it was accepted with (`Caller`).
    """

    def __init__(
        self,
        identity: CompositeVerifier | None,
        trusted: Iterable[TrustedIssuerVerifier] = (),
    ) -> None:
        self.identity = identity
        self.identity_issuers = identity.issuers if identity is not None else frozenset()
        self.trusted: dict[str, TrustedIssuerVerifier] = {}
        for verifier in trusted:
            if verifier.issuer in self.trusted or verifier.issuer in self.identity_issuers:
                raise ValueError(f"issuer {verifier.issuer!r} is configured twice")
            self.trusted[verifier.issuer] = verifier

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        identity: JwksVerifier | None,
        development: DevelopmentTokens | None = None,
        *,
        http: HttpClientFactory | None = None,
    ) -> MultiIssuerVerifier:
        """Identity's verifier (and development tokens, when given) plus one verifier per
        `settings.gateway.issuers` entry, whose keys are fetched with `http` (default: a
        fresh httpx client per fetch, with the platform's timeout)."""
        timeout = httpx.Timeout(settings.http_timeout_seconds)
        factory = http or (lambda: httpx.AsyncClient(timeout=timeout, verify=shared_tls_context()))
        composite = (
            CompositeVerifier(identity, development)
            if identity is not None or development is not None
            else None
        )
        trusted = [
            TrustedIssuerVerifier(
                entry, http=factory, refresh_seconds=settings.identity.jwks_refresh_seconds
            )
            for entry in settings.gateway.issuers
        ]
        return cls(composite, trusted)

    @property
    def issuers(self) -> frozenset[str]:
        return self.identity_issuers | frozenset(self.trusted)

    @staticmethod
    def tier_of(caller: Caller) -> str:
        """The rate-limit tier of a caller this verifier accepted (the gateway's `tier_of`)."""
        return caller.tier or DEFAULT_TIER

    def route(self, token: str) -> CompositeVerifier | TrustedIssuerVerifier:
        issuer = unverified_issuer(token)
        trusted = self.trusted.get(issuer)
        if trusted is not None:
            return trusted
        if self.identity is not None and issuer in self.identity_issuers:
            return self.identity
        if token_header(token).get("alg") == "HS256":
            # Say why, rather than "untrusted issuer": a development token where they are
            # switched off (production, or a platform reachable from other machines).
            raise Unauthenticated(detail="development tokens are not accepted here")
        raise Unauthenticated(detail="the token's issuer is not trusted here")

    async def prepare(self, token: str) -> None:
        await prepare_verifier(self.route(token), token)

    def verify(self, token: str) -> Caller:
        return self.route(token).verify(token)


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
