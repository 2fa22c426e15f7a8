"""Where the gateway sends a request: a service's ASGI app in this process (embedded), or
one of the service's processes over HTTP (distributed).

Over HTTP the request streams to the upstream and the answer streams back (neither is
held whole in memory) over a keep-alive pool per process (`gateway/pool.py`); hop-by-hop
headers are dropped both ways; `X-Forwarded-*` are set by the gateway. With several URLs
per service the gateway takes them in turn, skipping one whose `/health` probe failed or
which refused a connection, until a probe finds it back. Only idempotent methods without
a body are retried, once, on another process when the connection could not be made; a
pooled connection the upstream had closed before answering is replaced by a fresh one
under the same rule. Nothing is kept between requests but connections: no cookie jar.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymesh.gateway.breaker import UpstreamFailure
from paymesh.gateway.errors import UpstreamTimeout, UpstreamUnavailable
from paymesh.gateway.hop import (
    IDEMPOTENT_METHODS,
    RELAYED_NOT,
    ClientGone,
    ProxiedRequest,
    strip_hop_by_hop,
)
from paymesh.gateway.pool import ConnectFailed, Connection, ConnectionBroken, ConnectionPool

log = structlog.get_logger("paymesh.gateway")

FAILING_STATUSES = frozenset({502, 503, 504})
PROBLEM_JSON = b"application/problem+json"


def is_failure(status: int, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether an answer counts against the upstream's breaker. A 503 that is the
    service's own problem document (forex's `rates_stale`, the ledger's `ledger_overloaded`)
    is the service answering: counting it would let one such condition take every path of
    the service down for the breaker's ttl. Gateways', proxies' and servers' 502-504 count."""
    if status not in FAILING_STATUSES:
        return False
    if status != 503:
        return True
    for name, value in headers:
        if name.lower() == b"content-type":
            return not value.startswith(PROBLEM_JSON)
    return True


"""Upstream answers that count against its breaker (the answer still reaches the client)."""
CONNECT_TIMEOUT = 3.0
HEALTH_TIMEOUT = 2.0


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
        failed = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, status, failed
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                failed = is_failure(status, message.get("headers", ()))
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
        if failed:
            raise UpstreamFailure(self.name, f"answered {status}", None)


@dataclass
class Target:
    url: str
    pool: ConnectionPool
    host_header: bytes
    healthy: bool = True


class HttpUpstream:
    """A service's processes at one or more base URLs, each with a keep-alive pool."""

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        *,
        health_interval_seconds: float = 5.0,
        max_idle_connections: int = 32,
        connect_timeout_seconds: float = CONNECT_TIMEOUT,
    ) -> None:
        if not urls:
            raise ValueError(f"no URL for service {name}")
        self.name = name
        self.targets = [_target(url, max_idle_connections) for url in urls]
        self._turn = itertools.cycle(range(len(self.targets)))
        self.health_interval_seconds = health_interval_seconds
        self.connect_timeout_seconds = connect_timeout_seconds
        self._prober: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.probe()
        self._prober = asyncio.create_task(self._probe_forever(), name=f"probe {self.name}")

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
        for target in self.targets:
            await target.pool.close()

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_seconds)
            await self.probe()

    async def probe(self) -> None:
        async def check(target: Target) -> None:
            healthy = await _health(target)
            if healthy != target.healthy:
                log.warning("upstream_health", upstream=self.name, url=target.url, healthy=healthy)
            target.healthy = healthy

        await asyncio.gather(*(check(target) for target in self.targets))

    def _next_targets(self) -> list[Target]:
        """The healthy targets, starting with the next in turn."""
        targets = self.targets
        if len(targets) == 1:
            return targets if targets[0].healthy else []
        count = len(targets)
        start = next(self._turn)
        ordered = [targets[(start + offset) % count] for offset in range(count)]
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
        method: str = scope["method"]
        request = ProxiedRequest(scope, receive)
        attempts = targets[:2] if method in IDEMPOTENT_METHODS else targets[:1]
        for number, target in enumerate(attempts, start=1):
            try:
                connection = await self._exchange(target, request, timeout_seconds)
            except ClientGone:
                return  # nobody is left to answer; not the upstream's failure
            except ConnectFailed as failure:
                target.healthy = False
                log.warning(
                    "upstream_refused", upstream=self.name, url=target.url, reason=str(failure)
                )
                if number < len(attempts) and not request.body_started:
                    continue
                raise UpstreamFailure(
                    self.name,
                    "refused",
                    UpstreamUnavailable(f"{self.name} refused the connection", service=self.name),
                ) from None
            await self._relay(target, connection, send, timeout_seconds)
            return

    async def _exchange(
        self, target: Target, request: ProxiedRequest, timeout_seconds: float
    ) -> Connection:
        """Send the request on a pooled connection and wait for the answer's head. A
        reused connection the upstream had closed before answering anything is replaced
        by a fresh one, once, when the request can be sent again (idempotent, no body
        read yet)."""
        for fresh_retry in (False, True):
            connection = await target.pool.acquire(
                min(timeout_seconds, self.connect_timeout_seconds), fresh=fresh_retry
            )
            connection.arm(timeout_seconds)
            try:
                connection.begin(request.head(target.host_header), head_only=request.head_only)
                await request.send_body(connection)
                await connection.answer_head()
                connection.disarm()  # the body's reads are timed one by one (`_relay`)
                return connection
            except TimeoutError:
                connection.close()
                raise UpstreamFailure(
                    self.name,
                    "timed out",
                    UpstreamTimeout(f"{self.name} did not answer within {timeout_seconds:g} s"),
                ) from None
            except ConnectionBroken as broken:
                connection.close()
                if broken.reused and not broken.received and request.replayable and not fresh_retry:
                    continue
                raise UpstreamFailure(
                    self.name,
                    str(broken),
                    UpstreamUnavailable(f"{self.name} failed mid-request", service=self.name),
                ) from None
            except BaseException:
                connection.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _relay(
        self, target: Target, connection: Connection, send: Send, timeout_seconds: float
    ) -> None:
        """The answer to the client as it arrives; the connection back to its pool after."""
        status = connection.status
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    # The server under us sets its own Date and Server.
                    "headers": strip_hop_by_hop(connection.headers, RELAYED_NOT),
                }
            )
            while True:
                if connection.chunks:
                    body = connection.take()
                    if connection.complete and not connection.chunks:
                        break
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                elif connection.complete:
                    body = b""
                    break
                elif connection.closed or connection.error is not None:
                    raise connection.broken("closed mid-answer")
                else:
                    connection.arm(timeout_seconds)
                    await connection.wait()
            await send({"type": "http.response.body", "body": body})
        except (ConnectionBroken, TimeoutError):
            # The status line went out already: cut the answer short; the client sees an
            # incomplete body (Content-Length or chunked framing tells it).
            connection.close()
            log.warning("upstream_broke_mid_answer", upstream=self.name)
            raise UpstreamFailure(self.name, "broke mid-answer", None) from None
        except BaseException:
            connection.close()
            raise
        failed = is_failure(status, connection.headers)  # before the connection is reused
        target.pool.release(connection)
        if failed:
            raise UpstreamFailure(self.name, f"answered {status}", None)


def _target(url: str, max_idle: int) -> Target:
    parts = urlsplit(url.rstrip("/"))
    if parts.scheme != "http" or not parts.hostname or parts.path or parts.query:
        raise ValueError(f"an upstream URL is http://host[:port] (no TLS, path or query): {url}")
    port = parts.port or 80
    return Target(
        url=url.rstrip("/"),
        pool=ConnectionPool(parts.hostname, port, max_idle=max_idle),
        host_header=parts.netloc.encode("idna"),
    )


async def _health(target: Target) -> bool:
    """`GET /health` answered 200 within two seconds (on a pooled connection)."""
    connection: Connection | None = None
    try:
        connection = await target.pool.acquire(HEALTH_TIMEOUT)
        connection.arm(HEALTH_TIMEOUT)
        connection.begin(
            b"GET /health HTTP/1.1\r\nhost: " + target.host_header + b"\r\n\r\n",
            head_only=False,
        )
        while not connection.complete:
            if connection.closed or connection.error is not None:
                return False
            await connection.wait()
        connection.take()
        healthy = connection.status == 200
        target.pool.release(connection)
        return healthy
    except (ConnectFailed, ConnectionBroken, TimeoutError):
        if connection is not None:
            connection.close()
        return False
