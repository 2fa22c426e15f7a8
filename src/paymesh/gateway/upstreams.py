"""Where the gateway sends a request: a service's ASGI app in this process (embedded), or
one of the service's processes over HTTP (distributed).

Over HTTP the request streams to the upstream and the answer streams back (neither is
held whole in memory); hop-by-hop headers are dropped both ways; `X-Forwarded-*` are set.
With several URLs per service the gateway takes them in turn, skipping one whose
`/health` probe failed or which refused a connection, until a probe finds it back. Only
idempotent methods are retried, once, and only when the connection itself failed.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymesh.gateway.breaker import UpstreamFailure
from paymesh.gateway.errors import UpstreamTimeout, UpstreamUnavailable

log = structlog.get_logger("paymesh.gateway")

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
FAILING_STATUSES = frozenset({502, 503, 504})
"""Upstream answers that count against its breaker (the answer still reaches the client)."""


def strip_hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` without the hop-by-hop ones, including those `Connection` names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    return [
        (name, value)
        for name, value in headers
        if name.lower() not in HOP_BY_HOP and name.lower() not in named
    ]


class Upstream(Protocol):
    name: str

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, *, timeout_seconds: float
    ) -> None:
        """Answer the request through `send`; raise `UpstreamFailure` on a failure that
        counts against the breaker (before anything was sent when it carries an error)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class InProcessUpstream:
    """A service's ASGI app in this process: no network hop, same semantics."""

    def __init__(self, name: str, app: ASGIApp) -> None:
        self.name = name
        self.app = app

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, *, timeout_seconds: float
    ) -> None:
        started = False
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
            await send(message)

        try:
            async with asyncio.timeout(timeout_seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if started:  # the answer is under way: all we can do is cut it short
                raise UpstreamFailure(self.name, "timed out mid-answer", None) from None
            raise UpstreamFailure(
                self.name,
                "timed out",
                UpstreamTimeout(f"{self.name} did not answer within {timeout_seconds:g} s"),
            ) from None
        if status in FAILING_STATUSES:
            raise UpstreamFailure(self.name, f"answered {status}", None)


@dataclass
class Target:
    url: str
    healthy: bool = True
    failures: int = field(default=0)


class HttpUpstream:
    """A service's processes at one or more base URLs."""

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        *,
        client: httpx.AsyncClient | None = None,
        health_interval_seconds: float = 5.0,
    ) -> None:
        if not urls:
            raise ValueError(f"no URL for service {name}")
        self.name = name
        self.targets = [Target(url.rstrip("/")) for url in urls]
        self._turn = itertools.cycle(range(len(self.targets)))
        self.client = client or proxy_client()
        self.health_interval_seconds = health_interval_seconds
        self._prober: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.probe()
        self._prober = asyncio.create_task(self._probe_forever(), name=f"probe {self.name}")

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
        await self.client.aclose()

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_seconds)
            await self.probe()

    async def probe(self) -> None:
        async def check(target: Target) -> None:
            try:
                response = await self.client.get(f"{target.url}/health", timeout=2.0)
                healthy = response.status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy != target.healthy:
                log.warning("upstream_health", upstream=self.name, url=target.url, healthy=healthy)
            target.healthy = healthy

        await asyncio.gather(*(check(target) for target in self.targets))

    def _next_targets(self) -> list[Target]:
        """The healthy targets, starting with the next in turn."""
        count = len(self.targets)
        start = next(self._turn)
        ordered = [self.targets[(start + offset) % count] for offset in range(count)]
        return [target for target in ordered if target.healthy]

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, *, timeout_seconds: float
    ) -> None:
        targets = self._next_targets()
        if not targets:
            raise UpstreamFailure(
                self.name,
                "no healthy process",
                UpstreamUnavailable(f"no process of {self.name} is reachable", service=self.name),
            )
        body = _RequestBody(receive, expected=_has_body(scope))
        method = scope["method"]
        attempts = targets[:2] if method in IDEMPOTENT_METHODS else targets[:1]
        for number, target in enumerate(attempts, start=1):
            request = self.client.build_request(
                method,
                target.url + _path_and_query(scope),
                # The upstream's own Host; the client's is in X-Forwarded-Host.
                headers=[
                    (name, value)
                    for name, value in strip_hop_by_hop(scope["headers"])
                    if name != b"host"
                ],
                content=body.stream() if body.expected else None,
                timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 3.0)),
            )
            try:
                response = await asyncio.wait_for(
                    self.client.send(request, stream=True), timeout_seconds
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                target.healthy = False
                log.warning("upstream_refused", upstream=self.name, url=target.url)
                if number < len(attempts) and not body.started:
                    continue
                raise UpstreamFailure(
                    self.name,
                    error.__class__.__name__,
                    UpstreamUnavailable(f"{self.name} refused the connection", service=self.name),
                ) from None
            except (TimeoutError, httpx.TimeoutException):
                raise UpstreamFailure(
                    self.name,
                    "timed out",
                    UpstreamTimeout(f"{self.name} did not answer within {timeout_seconds:g} s"),
                ) from None
            except httpx.HTTPError as error:
                raise UpstreamFailure(
                    self.name,
                    error.__class__.__name__,
                    UpstreamUnavailable(f"{self.name} failed mid-request", service=self.name),
                ) from None
            await self._relay(response, send)
            if response.status_code in FAILING_STATUSES:
                raise UpstreamFailure(self.name, f"answered {response.status_code}", None)
            return

    async def _relay(self, response: httpx.Response, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    # The server under us sets its own Date and Server.
                    "headers": [
                        (name, value)
                        for name, value in strip_hop_by_hop(response.headers.raw)
                        if name.lower() not in (b"date", b"server")
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.HTTPError:
            # The status line went out already: cut the answer short; the client sees an
            # incomplete body (Content-Length or chunked framing tells it).
            log.warning("upstream_broke_mid_answer", upstream=self.name)
            raise UpstreamFailure(self.name, "broke mid-answer", None) from None
        finally:
            await response.aclose()


def proxy_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The HTTP client of the gateway's hop to the services."""
    return httpx.AsyncClient(
        transport=transport,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=32),
        follow_redirects=False,
        # A proxy keeps no cookies: one client's Set-Cookie must never ride along with
        # another client's request.
        cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
    )


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Accepts no cookie and returns none."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


class _RequestBody:
    """The client's request body as a stream for httpx, read from ASGI as it arrives."""

    def __init__(self, receive: Receive, *, expected: bool) -> None:
        self.receive = receive
        self.started = False
        self.expected = expected

    async def stream(self) -> AsyncIterator[bytes]:
        self.started = True
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


def _path_and_query(scope: Scope) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path
