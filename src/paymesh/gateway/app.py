"""The gateway: every public request passes here, in both shapes.

In order: request id and trace context; the route (path → service, policy); the client's
address against the route's allow/deny lists; the body limit; authentication (bearer
tokens from any trusted issuer, revocations included) and the route's scopes or roles;
rate limits (the caller's tier, or the anonymous tier per address); the upstream's
circuit breaker; then the upstream itself, with the answer's security and rate-limit
headers. Plain ASGI, no framework: it sits on every request's path. Paths no service owns
(`/health`, `/docs`, `/openapi.json`, ...) go to the platform's own app.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymesh.gateway.authenticators import Authenticator, BearerAuthenticator
from paymesh.gateway.breaker import Breakers, UpstreamFailure
from paymesh.gateway.errors import AddressRefused, InsufficientScope, MissingToken, RateLimited
from paymesh.gateway.inbound import (
    buffered,
    chunked,
    client_address,
    declared_within,
    forwarded,
    from_trusted_proxy,
    header,
    with_length,
)
from paymesh.gateway.ratelimit import (
    Allowance,
    RateLimiter,
    storage_for,
    tier_limit,
    tier_name,
)
from paymesh.gateway.routes import Address, Network, Route, RouteTable
from paymesh.gateway.upstreams import Upstream
from paymesh.kernel.auth import Caller, TokenVerifier
from paymesh.kernel.config import Settings
from paymesh.kernel.errors import PROBLEM_MEDIA_TYPE, PaymeshError
from paymesh.kernel.jsonutil import dumps
from paymesh.kernel.metrics import RATE_LIMITED
from paymesh.kernel.observability import (
    new_traceparent,
    request_id_or_new,
    request_id_var,
    trace_id_of,
    traceparent_var,
)
from paymesh.kernel.runtime import ServiceSpec
from paymesh.kernel.tracing import answered, server_span, tracing_on

log = structlog.get_logger("paymesh.gateway")

TierOf = Callable[[Caller], str | None]
SCIM_MEDIA_TYPE = "application/scim+json"
SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
REPLACED_RESPONSE_HEADERS = frozenset({b"x-request-id", b"traceparent"})


@dataclass
class Exchange:
    """One request's facts, for its answer's headers and its access-log line."""

    request_id: str
    traceparent: str
    route: Route | None = None
    caller: Caller | None = None
    allowance: Allowance | None = None
    status: int = 0


class Gateway:
    def __init__(
        self,
        *,
        table: RouteTable,
        upstreams: Mapping[str, Upstream],
        authenticators: Sequence[Authenticator],
        limiter: RateLimiter | None,
        breakers: Breakers,
        own_app: ASGIApp,
        tier_of: TierOf,
        anonymous_per_minute: int,
        https: bool,
        access_log: bool = True,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self.table = table
        self.upstreams = upstreams
        self.authenticators = list(authenticators)
        self.limiter = limiter
        self.breakers = breakers
        self.own_app = own_app
        self.tier_of = tier_of
        self.anonymous_per_minute = anonymous_per_minute
        self.access_log = access_log
        self.security_headers = _security_headers(https)
        self._watched = frozenset(
            [*(name for name, _ in self.security_headers), b"ratelimit-limit"]
        )
        self.trusted_proxies = tuple(trusted_proxies)

    async def start(self) -> None:
        await self.breakers.start()
        for upstream in self.upstreams.values():
            await upstream.start()

    async def stop(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.own_app(scope, receive, send)
            return
        headers = scope["headers"]
        request_id = request_id_or_new(header(headers, b"x-request-id"))
        incoming = header(headers, b"traceparent")
        if not tracing_on():
            traceparent = new_traceparent(trace_id_of(incoming))
            await self._serve(scope, receive, send, Exchange(request_id, traceparent))
            return
        with server_span(scope["method"], incoming, "gateway") as current:
            exchange = Exchange(request_id, traceparent_var.get() or new_traceparent())
            await self._serve(scope, receive, send, exchange)
            route = exchange.route
            answered(current, scope["method"], route.prefix if route else None, exchange.status)
            if route is not None:
                current.set_attribute("paymesh.upstream", route.service)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        request_token = request_id_var.set(exchange.request_id)
        trace_token = traceparent_var.set(exchange.traceparent)
        started = time.perf_counter()
        try:
            await self._handle(scope, receive, self._answering(exchange, send), exchange)
        finally:
            request_id_var.reset(request_token)
            traceparent_var.reset(trace_token)
            if self.access_log:
                self._log(scope, exchange, time.perf_counter() - started)

    def _answering(self, exchange: Exchange, send: Send) -> Send:
        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                message["headers"] = self._response_headers(message.get("headers", ()), exchange)
            await send(message)

        return answer

    def _response_headers(
        self, headers: Sequence[tuple[bytes, bytes]], exchange: Exchange
    ) -> list[tuple[bytes, bytes]]:
        answer: list[tuple[bytes, bytes]] = []
        present: set[bytes] = set()  # of the names we would add: the upstream's win
        watched = self._watched
        for pair in headers:
            name = pair[0].lower()
            if name in REPLACED_RESPONSE_HEADERS:
                continue
            if name in watched:
                present.add(name)
            answer.append(pair)
        if present:
            answer += [pair for pair in self.security_headers if pair[0] not in present]
        else:
            answer += self.security_headers
        answer.append((b"x-request-id", exchange.request_id.encode()))
        answer.append((b"traceparent", exchange.traceparent.encode()))
        if exchange.allowance is not None and b"ratelimit-limit" not in present:
            answer += exchange.allowance.headers()
        return answer

    async def _handle(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        route = self.table.match(scope["method"], scope["path"])
        if route is None:
            await self.own_app(scope, receive, send)
            return
        exchange.route = route
        try:
            if (route.allow or route.deny) and not route.admits(self._client_address(scope)):
                raise AddressRefused()
            # Who is asking, and whether they may, before the body is even measured.
            exchange.caller = await self._authenticate(scope, route)
            await self._limit(scope, route, exchange)
            if not declared_within(scope, route.body_limit_bytes) and chunked(scope):
                receive, length = await buffered(receive, route.body_limit_bytes)
                if length:  # read whole here: sent on with its length (chunked framing is
                    # hop-by-hop, and dropped)
                    scope = with_length(scope, length)
            upstream = self.upstreams[route.service]
            scope = forwarded(
                scope,
                exchange.request_id,
                exchange.traceparent,
                from_trusted_proxy=from_trusted_proxy(scope, self.trusted_proxies),
            )
            async with self.breakers.guard(route.service):
                await upstream.forward(scope, receive, send, timeout_seconds=route.timeout_seconds)
        except UpstreamFailure:  # counted by the breaker; its answer already went out
            return
        except PaymeshError as error:
            if exchange.status:  # the upstream's answer is under way: nothing to add
                raise
            await self._refuse(scope, send, exchange, error)

    def _client_address(self, scope: Scope) -> Address | None:
        return client_address(scope, self.trusted_proxies)

    async def _authenticate(self, scope: Scope, route: Route) -> Caller | None:
        if route.policy == "public":
            return None
        caller = None
        for authenticator in self.authenticators:
            caller = await authenticator.authenticate(scope["headers"])
            if caller is not None:
                break
        if caller is None:
            raise MissingToken()
        if (route.scopes or route.roles) and not caller.has_any(route.roles, route.scopes):
            wanted = " ".join(sorted(route.scopes))
            raise InsufficientScope(
                "this route needs one of: "
                + ", ".join([*sorted(route.scopes), *sorted(route.roles)]),
                required_scope=wanted or None,
            )
        return caller

    async def _limit(self, scope: Scope, route: Route, exchange: Exchange) -> None:
        if self.limiter is None:
            return
        caller = exchange.caller
        if caller is None:
            address = self._client_address(scope)
            who = f"address:{address}"
            per_minute: int | None = self.anonymous_per_minute
        else:
            who = f"client:{caller.client_id or caller.subject}"
            tier = self.tier_of(caller)
            per_minute = tier_limit(tier)
        checks = [(who, per_minute)]
        if route.per_minute is not None:
            checks.append((f"route:{route.limit_key}:{who}", route.per_minute))
        try:
            refused, reported = await self.limiter.check_all(checks)
        except Exception:
            log.exception("rate_limit_unavailable")
            return
        exchange.allowance = reported
        if refused is not None:
            RATE_LIMITED.labels("anonymous" if caller is None else tier_name(tier)).inc()
            raise RateLimited(
                f"at most {refused.limit} requests per minute; retry in {refused.reset_seconds} s",
                limit=refused.limit,
            )

    async def _refuse(
        self, scope: Scope, send: Send, exchange: Exchange, error: PaymeshError
    ) -> None:
        document = error.problem(instance=scope["path"])
        document["request_id"] = exchange.request_id
        media_type = PROBLEM_MEDIA_TYPE
        if exchange.route is not None and exchange.route.refusals == "scim":
            document = _scim_error(document)
            media_type = SCIM_MEDIA_TYPE
        headers = [(b"content-type", media_type.encode())]
        if error.status == 401:
            headers.append((b"www-authenticate", _challenge(error)))
        elif isinstance(error, InsufficientScope):
            wanted = document.get("required_scope") or ""
            challenge = f'Bearer realm="paymesh", error="insufficient_scope", scope="{wanted}"'
            headers.append((b"www-authenticate", challenge.encode()))
        body = dumps(document)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _log(self, scope: Scope, exchange: Exchange, elapsed: float) -> None:
        caller = exchange.caller
        route = exchange.route
        log.info(
            "gateway_request",
            method=scope["method"],
            path=scope["path"],
            status=exchange.status,
            latency_ms=round(elapsed * 1000, 2),
            upstream=route.service if route else None,
            client_id=caller.client_id if caller else None,
            subject=caller.subject if caller else None,
            request_id=exchange.request_id,
        )


def _scim_error(problem: dict[str, object]) -> dict[str, object]:
    """A refusal as a SCIM error document (RFC 7644 3.12: `status` is a string)."""
    document: dict[str, object] = {
        "schemas": [SCIM_ERROR_SCHEMA],
        "status": str(problem["status"]),
        "detail": problem.get("detail") or problem["title"],
    }
    if problem["status"] == 400:
        document["scimType"] = "invalidValue"
    return document


def _challenge(error: PaymeshError) -> bytes:
    """RFC 6750 3.1: no error code when the request had no credentials at all."""
    if isinstance(error, MissingToken):
        return b'Bearer realm="paymesh"'
    description = error.detail.replace('"', "'")
    return (
        f'Bearer realm="paymesh", error="invalid_token", error_description="{description}"'.encode()
    )


def _security_headers(https: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cache-control", b"no-store"),
    ]
    if https:
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return headers


def build_gateway(
    settings: Settings,
    specs: Sequence[ServiceSpec],
    upstreams: Mapping[str, Upstream],
    *,
    verifier: TokenVerifier,
    own_app: ASGIApp,
    tier_of: TierOf,
    elsewhere: Sequence[str] = (),
) -> Gateway:
    """The gateway for `specs` (the route table) in front of `upstreams`; `elsewhere`: the
    prefixes of the services other processes serve."""
    gateway_settings = settings.gateway
    return Gateway(
        table=RouteTable.from_specs(specs, settings, elsewhere=elsewhere),
        upstreams=upstreams,
        authenticators=[BearerAuthenticator(verifier)],
        limiter=RateLimiter(
            storage_for(settings.redis_url), burst_per_second=gateway_settings.burst_per_second
        )
        if gateway_settings.rate_limits
        else None,
        breakers=Breakers(
            threshold=gateway_settings.breaker_threshold,
            ttl_seconds=gateway_settings.breaker_ttl_seconds,
            redis_url=settings.redis_url,
        ),
        own_app=own_app,
        tier_of=tier_of,
        anonymous_per_minute=gateway_settings.anonymous_per_minute,
        https=settings.origin.startswith("https://"),
        access_log=settings.access_log,
        trusted_proxies=[
            ipaddress.ip_network(cidr, strict=False) for cidr in gateway_settings.trusted_proxies
        ],
    )


def with_cors(app: ASGIApp, settings: Settings) -> ASGIApp:
    """CORS outermost, so a browser's preflight is answered before authentication."""
    origins = settings.gateway.cors_origins
    if not origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["authorization", "content-type", "idempotency-key", "x-request-id"],
        expose_headers=[
            "x-request-id",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "retry-after",
            "location",
        ],
        max_age=600,
    )
