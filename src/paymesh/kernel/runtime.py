"""What a service is (`ServiceSpec`) and what it runs with (`ServiceRuntime`).

Each service package's `app.py` exposes `SPEC`. The composition root (`paymesh.platform`)
builds one `ServiceRuntime` per service: its database, outbox, relay, consumers, task queue,
scheduler and idempotency store, plus clients to the other services.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import structlog
from fastapi import APIRouter
from sqlalchemy import MetaData

from paymesh.kernel.auth import DevelopmentTokens, TokenVerifier
from paymesh.kernel.cache import Cache, MemoryCache
from paymesh.kernel.config import EdgeRoute, Settings
from paymesh.kernel.db import Database
from paymesh.kernel.event_catalog import EventCatalog, EventType
from paymesh.kernel.events import (
    BatchConsumerHandler,
    Consumer,
    ConsumerHandler,
    EventBus,
    Outbox,
    OutboxRelay,
)
from paymesh.kernel.http import InProcessHttp, ServiceClient, shared_tls_context
from paymesh.kernel.idempotency import IdempotencyStore
from paymesh.kernel.jobs import PeriodicJob, Scheduler, TaskHandler, TaskQueue
from paymesh.kernel.migrations import migrate
from paymesh.kernel.revocation import RevocationRegistry
from paymesh.kernel.tables import KernelTables

log = structlog.get_logger("paymesh.runtime")


class Worker(Protocol):
    """A background loop: `run_forever` until `stop` is called."""

    name: str

    async def run_forever(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    patterns: tuple[str, ...]
    handler: ConsumerHandler
    batch_handler: BatchConsumerHandler | None = None
    """Opt-in group commit: takes a relay batch's matching events in one transaction
    (`Consumer.handle_batch`); `handler` remains the per-event fallback."""


@dataclass(frozen=True)
class ServiceSpec:
    """Everything the platform needs to know to run one service."""

    name: str
    title: str
    description: str
    metadata: MetaData
    tables: KernelTables
    migrations: Path
    routers: Sequence[APIRouter]
    path_prefixes: tuple[str, ...] = ()
    setup: Callable[[ServiceRuntime], None] | None = None
    consumers: Callable[[ServiceRuntime], list[ConsumerSpec]] | None = None
    periodic_jobs: Callable[[ServiceRuntime], list[PeriodicJob]] | None = None
    task_handlers: Callable[[ServiceRuntime], dict[str, TaskHandler]] | None = None
    seed_demo: Callable[[ServiceRuntime], Awaitable[None]] | None = None
    on_start: Callable[[ServiceRuntime], Awaitable[None]] | None = None
    on_stop: Callable[[ServiceRuntime], Awaitable[None]] | None = None
    fast_paths: Callable[[ServiceRuntime], dict[tuple[str, str], Any]] | None = None
    workers: Callable[[ServiceRuntime], list[Worker]] | None = None
    """The service's own background loops (notifications' dispatcher), run beside the
    outbox relay, the task queue and the scheduler wherever workers run."""
    body_limits: dict[tuple[str, str], int] = field(default_factory=dict)
    """Largest body per (method, path), for routes that take more than
    `PAYMESH_MAX_BODY_BYTES` (the ledger's batch endpoint)."""
    edge_routes: tuple[EdgeRoute, ...] = ()
    """The gateway's policies for this service's paths (public ones, required scopes)."""
    events: tuple[EventType, ...] = ()
    """The event types the service writes, with their data models (`<service>/events.py`):
    the AsyncAPI document, and the outbox's check when `PAYMESH_EVENTS_CHECK_PAYLOADS`."""

    @property
    def prefixes(self) -> tuple[str, ...]:
        return self.path_prefixes or (f"/v1/{self.name}",)


@dataclass
class Directory:
    """How a service reaches the others: an ASGI app in process, or base URLs."""

    settings: Settings
    tokens: DevelopmentTokens
    in_process: InProcessHttp | None = None
    """The platform's app, for calls to the services in this process (kernel/http.py)."""
    local: set[str] = field(default_factory=set)
    service_tokens: Callable[[str, str], Awaitable[str]] | None = None
    """`(caller, service) -> access token`: client-credentials tokens from identity when it
    is part of the platform; development tokens otherwise."""

    def http(self, service: str) -> httpx.AsyncClient:
        """A bare HTTP client on `service` (in process or over the network)."""
        if service in self.local and self.in_process is not None:
            return httpx.AsyncClient(
                base_url=f"http://{self.in_process.host}",
                transport=httpx.ASGITransport(app=self.in_process.app),
            )
        base_url = self.settings.service(service).base_url or self.settings.origin
        return httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(self.settings.http_timeout_seconds),
            verify=shared_tls_context(),
        )

    def _token(self, service: str, caller: str) -> Callable[[], str | Awaitable[str]]:
        service_tokens = self.service_tokens
        if service_tokens is not None:
            return lambda: service_tokens(caller, service)
        # A client acting as itself: `sub` is the client id (RFC 9068 2.2).
        return lambda: self.tokens.issue(
            f"service-{caller}", roles=["service"], scopes=[service], client_id=f"service-{caller}"
        )

    def client(self, service: str, caller: str) -> ServiceClient:
        in_process = self.in_process if service in self.local else None
        if in_process is not None:
            base_url = f"http://{in_process.host}"
        else:
            base_url = self.settings.service(service).base_url or self.settings.origin
        return ServiceClient(
            base_url,
            in_process=in_process,
            token=self._token(service, caller),
            timeout_seconds=self.settings.http_timeout_seconds,
            retries=self.settings.http_retries,
            in_progress_wait_seconds=self.settings.http_in_progress_wait_seconds,
        )


class ServiceRuntime:
    def __init__(
        self,
        spec: ServiceSpec,
        settings: Settings,
        bus: EventBus,
        directory: Directory,
        token_verifier: TokenVerifier,
        cache: Cache | None = None,
        revocations: RevocationRegistry | None = None,
    ) -> None:
        self.spec = spec
        self.revocations = revocations if revocations is not None else RevocationRegistry()
        self.cache: Cache = cache or MemoryCache()
        self.name = spec.name
        self.settings = settings
        self.bus = bus
        self.directory = directory
        self.token_verifier = token_verifier
        self.tables = spec.tables
        self.database = Database.for_service(settings, spec.name)
        self.outbox = Outbox(
            spec.name,
            spec.tables,
            # A service that declares no events yet is not checked (tests/test_asyncapi.py
            # lists the services that must declare theirs).
            EventCatalog(spec.name, spec.events)
            if settings.events.check_payloads and spec.events
            else None,
        )
        self.idempotency = IdempotencyStore(
            self.database,
            spec.tables,
            ttl_seconds=settings.idempotency_ttl_seconds,
        )
        events = settings.events
        self.relay = OutboxRelay(
            self.database,
            spec.tables,
            bus,
            batch_size=events.relay_batch_size,
            interval_seconds=events.relay_interval_seconds,
            lease_seconds=events.lease_seconds,
            retention_seconds=events.outbox_retention_seconds,
        )
        self.outbox.listeners.append(self.relay.wake)
        self.state: dict[str, Any] = {}
        if spec.setup is not None:
            spec.setup(self)
        self.consumers: dict[str, Consumer] = {}
        for item in spec.consumers(self) if spec.consumers else []:
            consumer = Consumer(
                f"{spec.name}.{item.name}",
                self.database,
                spec.tables,
                item.handler,
                batch_handler=item.batch_handler,
                max_attempts=events.max_attempts,
                retry_base_seconds=events.retry_base_seconds,
            )
            self.consumers[item.name] = consumer
            bus.subscribe(
                consumer.name,
                item.patterns,
                consumer,
                consumer.handle_batch if consumer.batches else None,
            )
        self.tasks = TaskQueue(
            self.database,
            spec.tables,
            spec.task_handlers(self) if spec.task_handlers else {},
        )
        jobs = spec.periodic_jobs(self) if spec.periodic_jobs else []
        jobs.append(PeriodicJob("purge_idempotency_records", 3600, self.idempotency.purge_expired))
        jobs.append(
            PeriodicJob(
                "purge_published_events",
                3600,
                lambda: self.relay.purge_published(events.outbox_retention_seconds),
            )
        )
        self.scheduler = Scheduler(self.database, spec.tables, jobs)
        self.own_workers: list[Worker] = spec.workers(self) if spec.workers else []
        self._workers: list[asyncio.Task[None]] = []

    def client(self, service: str) -> ServiceClient:
        return self.directory.client(service, caller=self.name)

    async def migrate(self) -> None:
        await migrate(self.database, self.spec.migrations, self.spec.metadata)

    async def start(self, *, run_workers: bool) -> None:
        if self.spec.on_start is not None:
            await self.spec.on_start(self)
        if run_workers:
            await self.start_workers()

    async def start_workers(self) -> None:
        for name, loop in (
            ("outbox-relay", self.relay.run_forever),
            ("task-queue", self.tasks.run_forever),
            ("scheduler", self.scheduler.run_forever),
        ):
            self._workers.append(asyncio.create_task(loop(), name=f"{self.name}:{name}"))
        for own in self.own_workers:
            self._workers.append(
                asyncio.create_task(own.run_forever(), name=f"{self.name}:{own.name}")
            )

    async def stop(self, grace_seconds: float = 15.0) -> None:
        """Let the workers finish what they hold, then stop; cancel only stragglers."""
        for loop in (self.relay, self.tasks, self.scheduler):
            loop.stop()
        for own in self.own_workers:
            own.stop()
        if self._workers:
            _done, stragglers = await asyncio.wait(self._workers, timeout=grace_seconds)
            for worker in stragglers:
                worker.cancel()
            for worker in stragglers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
        self._workers.clear()
        if self.spec.on_stop is not None:
            await self.spec.on_stop(self)
        await self.database.dispose()


def settle_heap() -> None:
    """Once a server has started: collect start-up garbage, then move every object alive
    (modules, SQLAlchemy and FastAPI structures, compiled statements: a few hundred
    thousand) out of the collector's sight. Without it each full collection walks them
    all: pauses of 60-220 ms measured under load, the whole p99 tail of a write."""
    gc.collect()
    gc.freeze()
