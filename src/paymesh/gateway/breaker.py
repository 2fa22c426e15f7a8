"""A circuit breaker per upstream service (purgatory).

It opens after `threshold` consecutive failures (refused connections, timeouts, 502-504
answers), then fails fast with 503 `upstream_unavailable` for `ttl_seconds`; the next
request after that is a probe (half-open): success closes the breaker, failure opens it
again. In the distributed shape the state lives in Redis, shared by every gateway process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from purgatory import AsyncCircuitBreakerFactory, AsyncInMemoryUnitOfWork, AsyncRedisUnitOfWork
from purgatory.domain.model import OpenedState

from paymesh.gateway.errors import GatewayError, UpstreamUnavailable
from paymesh.kernel.metrics import BREAKER_OPEN

log = structlog.get_logger("paymesh.gateway")


class UpstreamFailure(Exception):
    """An upstream failed in a way that counts against its breaker. `error` is what the
    client gets; None when the upstream's own answer (a 502-504) already went out."""

    def __init__(self, service: str, reason: str, error: GatewayError | None) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason
        self.error = error


class Breakers:
    def __init__(self, *, threshold: int, ttl_seconds: float, redis_url: str | None) -> None:
        unit_of_work = AsyncRedisUnitOfWork(redis_url) if redis_url else AsyncInMemoryUnitOfWork()
        self.factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=ttl_seconds, uow=unit_of_work
        )
        self.factory.add_listener(self._on_event)
        self._initialized = False

    async def start(self) -> None:
        if not self._initialized:
            await self.factory.initialize()
            self._initialized = True

    @staticmethod
    def _on_event(name: str, event_name: str, event: object) -> None:
        if event_name == "state_changed":
            state = getattr(event, "state", None)
            log.warning("upstream_breaker", upstream=name, state=state)
            service = name.removeprefix("paymesh:gateway:")
            BREAKER_OPEN.labels(service).set(1 if str(state) == "opened" else 0)

    @asynccontextmanager
    async def guard(self, service: str) -> AsyncIterator[None]:
        """Run one call to `service` under its breaker: raise `UpstreamFailure` inside to
        count a failure (its `error` is raised from here); an open breaker raises 503
        `upstream_unavailable` without calling; anything else passes through uncounted."""
        breaker = await self.factory.get_breaker(f"paymesh:gateway:{service}")
        try:
            async with breaker:
                yield
        except OpenedState:
            BREAKER_OPEN.labels(service).set(1)  # opened here or by another gateway
            raise UpstreamUnavailable(
                f"{service} is failing; requests are refused until it recovers",
                service=service,
            ) from None
        except UpstreamFailure as failure:
            log.warning("upstream_failed", upstream=service, reason=failure.reason)
            if failure.error is not None:
                raise failure.error from None

    async def state(self, service: str) -> str:
        breaker = await self.factory.get_breaker(f"paymesh:gateway:{service}")
        return str(breaker.context.state)
