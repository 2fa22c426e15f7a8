"""The composition root: which services run in this process and how they reach each other.

`Platform` builds a runtime and an app per service, picks the bus, and serves every
hosted service on one origin behind the gateway (`paymesh/gateway`): a public request
passes the gateway's policies, then goes in process to the service that owns its path
prefix. `/docs` and `/openapi.json` show the merged API; `/health`, `/ready` and
`/metrics` cover the whole process. Services call each other past the gateway (in
process, or over HTTP at their configured URL), as they would on a private network.

`Platform(settings, [], gateway_only=True)` is the distributed gateway (`paymesh serve
gateway`): no service here, each one reached over HTTP at `PAYMESH_<SERVICE>_URL`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from paymesh import __version__
from paymesh.gateway.app import Gateway, build_gateway, with_cors
from paymesh.gateway.docs import decorate_openapi, install_docs
from paymesh.gateway.upstreams import HttpUpstream, InProcessUpstream, Upstream
from paymesh.kernel.app import (
    add_operational_routes,
    create_service_app,
    database_check,
    service_asgi,
)
from paymesh.kernel.asyncapi import PAGE_SECURITY_POLICY, asyncapi_document, asyncapi_page
from paymesh.kernel.auth import CachedVerifier, DevelopmentTokens
from paymesh.kernel.brokers import BrokerBus, broker_bus
from paymesh.kernel.cache import build_cache
from paymesh.kernel.config import Settings
from paymesh.kernel.config.banks import BANK_SIMULATOR_PATH
from paymesh.kernel.errors import install_error_handlers
from paymesh.kernel.events import EventBus, InProcessBus
from paymesh.kernel.http import InProcessHttp
from paymesh.kernel.observability import RequestContextMiddleware
from paymesh.kernel.oidc import (
    ClientCredentialsTokens,
    JwksVerifier,
    MultiIssuerVerifier,
    service_client_id,
    service_client_secret,
)
from paymesh.kernel.openapi import install_openapi
from paymesh.kernel.revocation import RedisRevocationFeed, RevocationRegistry
from paymesh.kernel.runtime import Directory, ServiceRuntime, ServiceSpec, settle_heap
from paymesh.kernel.tracing import configure_tracing, flush_tracing, instrument_engines
from paymesh.notifications.simulators.mounting import mount_notification_simulators
from paymesh.providers.connectors.kyc import SIMULATOR_PATH
from paymesh.providers.simulators.bank import build_app as build_bank_simulator
from paymesh.providers.simulators.kyc import build_app as build_kyc_simulator

SERVICE_MODULES: dict[str, str] = {
    "identity": "paymesh.identity.app",
    "ledger": "paymesh.ledger.app",
    "profiles": "paymesh.profiles.app",
    "providers": "paymesh.providers.app",
    "forex": "paymesh.forex.app",
    "wallets": "paymesh.wallets.app",
    "risk": "paymesh.risk.app",
    "audit": "paymesh.audit.app",
    "notifications": "paymesh.notifications.app",
    "payments": "paymesh.payments.app",
}


def load_spec(name: str) -> ServiceSpec:
    if name not in SERVICE_MODULES:
        known = ", ".join(sorted(SERVICE_MODULES))
        raise ValueError(f"unknown service {name!r}; known services: {known}")
    spec = importlib.import_module(SERVICE_MODULES[name]).SPEC
    assert isinstance(spec, ServiceSpec)
    return spec


def build_bus(settings: Settings, known_sources: Sequence[str] = ()) -> EventBus:
    """The in-process bus, or with `PAYMESH_BROKER_URL` the broker's (kernel/brokers.py)."""
    if settings.broker_url:
        return broker_bus(
            settings.broker_url, settings.events.broker_namespace, known_sources=known_sources
        )
    return InProcessBus()


class Platform:
    def __init__(
        self,
        settings: Settings,
        services: Sequence[str] | None = None,
        *,
        specs: Sequence[ServiceSpec] = (),
        run_workers: bool = True,
        gateway: bool = True,
        gateway_only: bool = False,
    ) -> None:
        settings.check_exposure()
        self.settings = settings
        self.run_workers = run_workers
        chosen = list(SERVICE_MODULES) if services is None else list(services)
        if gateway_only and (chosen or specs):
            raise ValueError("the distributed gateway hosts no service")
        self.specs = [load_spec(name) for name in chosen] + list(specs)
        self.tokens = DevelopmentTokens(
            settings.signing_secret.get_secret_value(),
            settings.token_issuer,
            settings.token_audience,
        )
        self.bus = build_bus(settings, [*SERVICE_MODULES, *(spec.name for spec in self.specs)])
        self.bus_running = False
        self.cache = build_cache(settings.redis_url)
        self.directory = Directory(settings, self.tokens)
        self.jwks = self._jwks_verifier(chosen)
        development = self.tokens if settings.development_tokens_allowed else None
        self.revocations = RevocationRegistry(
            RedisRevocationFeed(
                settings.redis_url,
                retention_seconds=settings.identity.access_token_ttl_seconds + 60,
            )
            if settings.redis_url
            else None
        )
        # Identity's tokens (and development tokens where allowed), plus those of every
        # external OpenID provider in PAYMESH_GATEWAY_ISSUERS: one verifier, used by the
        # gateway and by every service, with the revocations in force.
        self.verifier = MultiIssuerVerifier.from_settings(settings, self.jwks, development)
        verifier = CachedVerifier(self.verifier, revocations=self.revocations)
        # Behind an in-process gateway a service's access-log line would repeat the
        # gateway's; a service process of the distributed shape logs its own.
        service_settings = (
            settings.model_copy(update={"access_log": False}) if gateway else settings
        )
        self.runtimes: dict[str, ServiceRuntime] = {
            spec.name: ServiceRuntime(
                spec,
                service_settings,
                self.bus,
                self.directory,
                verifier,
                cache=self.cache,
                revocations=self.revocations,
            )
            for spec in self.specs
        }
        self.service_apps: dict[str, FastAPI] = {
            name: create_service_app(runtime, manage_lifecycle=False)
            for name, runtime in self.runtimes.items()
        }
        self.asgi: dict[str, ASGIApp] = {
            name: service_asgi(app, self.runtimes[name]) for name, app in self.service_apps.items()
        }
        self.routes = sorted(
            ((prefix, self.asgi[spec.name]) for spec in self.specs for prefix in spec.prefixes),
            key=lambda item: -len(item[0]),
        )
        self.root = self._root_app()
        # Service-to-service calls skip the gateway (as on a private network).
        self.directory.in_process = InProcessHttp(self._internal)
        self.directory.local = set(self.runtimes)
        self.gateway = self._gateway(verifier, gateway_only=gateway_only)
        # A service process of the distributed shape sits behind `paymesh serve gateway`
        # and answers it directly (verifying tokens itself, as every service does).
        self.fronted = gateway or gateway_only
        self.public: ASGIApp = with_cors(self.gateway, settings) if self.fronted else self._internal
        if self.jwks is not None:
            self.directory.service_tokens = self._service_token
        self._service_credentials: dict[str, ClientCredentialsTokens] = {}
        self._openapi: dict[str, Any] | None = None
        self._asyncapi: dict[str, Any] | None = None

    def _jwks_verifier(self, services: list[str]) -> JwksVerifier | None:
        """Identity's tokens are accepted when identity runs here or has a URL."""
        settings = self.settings
        if "identity" not in services and settings.identity.url is None:
            return None

        async def fetch() -> dict[str, Any]:
            async with self.directory.http("identity") as client:
                response = await client.get("/oauth2/jwks")
                response.raise_for_status()
                document: dict[str, Any] = response.json()
                return document

        return JwksVerifier(
            fetch,
            issuer=settings.issuer,
            audience=settings.token_audience,
            refresh_seconds=settings.identity.jwks_refresh_seconds,
        )

    async def _service_token(self, caller: str, service: str) -> str:
        """A client-credentials token of `caller`'s service account for calling `service`."""
        credentials = self._service_credentials.get(caller)
        if credentials is None:
            credentials = ClientCredentialsTokens(
                lambda: self.directory.http("identity"),
                "/oauth2/token",
                service_client_id(caller),
                service_client_secret(self.settings, caller),
            )
            self._service_credentials[caller] = credentials
        return await credentials.token([service])

    def _gateway(self, verifier: CachedVerifier, *, gateway_only: bool) -> Gateway:
        upstreams: dict[str, Upstream]
        if gateway_only:
            remote = {
                name: self.settings.service(name).urls
                for name in SERVICE_MODULES
                if self.settings.service(name).urls
            }
            specs = [load_spec(name) for name in remote]
            interval = self.settings.gateway.health_interval_seconds
            upstreams = {
                name: HttpUpstream(name, urls, health_interval_seconds=interval)
                for name, urls in remote.items()
            }
        else:
            specs = self.specs
            upstreams = {
                spec.name: InProcessUpstream(spec.name, self.asgi[spec.name]) for spec in self.specs
            }
        return build_gateway(
            self.settings,
            specs,
            upstreams,
            verifier=verifier,
            own_app=self.root,
            tier_of=self.verifier.tier_of,
            # Only operators' routes need them: without any, a one-service process does
            # not import every other service to learn its prefixes.
            elsewhere=[
                prefix
                for name in SERVICE_MODULES
                if name not in self.runtimes
                for prefix in load_spec(name).prefixes
            ]
            if self.settings.gateway.routes
            else [],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.root(scope, receive, send)
            return
        await self.public(scope, receive, send)

    async def _internal(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Straight to the service that owns the path (service-to-service calls)."""
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            for prefix, app in self.routes:
                if path == prefix or path.startswith(prefix + "/"):
                    await app(scope, receive, send)
                    return
        await self.root(scope, receive, send)

    async def migrate(self) -> None:
        for runtime in self.runtimes.values():
            await runtime.migrate()

    async def seed_demo(self) -> None:
        if self.settings.env == "production":
            raise RuntimeError("demo data is refused when PAYMESH_ENV=production")
        for runtime in self.runtimes.values():
            if runtime.spec.seed_demo is not None:
                await runtime.spec.seed_demo(runtime)

    async def start(self) -> None:
        # Per process (after any fork: the exporter's thread does not survive one).
        if configure_tracing(self.trace_service_name()):
            databases = [runtime.database for runtime in self.runtimes.values()]
            instrument_engines(
                [database.engine for database in databases]
                + [database.read_engine for database in databases if database.is_sqlite]
            )
        await self.revocations.start()
        if self.fronted:  # a service process behind `serve gateway` opens no breaker store
            await self.gateway.start()
        for runtime in self.runtimes.values():
            await runtime.start(run_workers=self.run_workers)
        # After the services: consumers need what their services set up on start. The
        # relays' first publishes wait for it. A process without workers (`serve
        # --no-workers`, the gateway alone) neither relays nor consumes: no bus.
        self.bus_running = self.run_workers and bool(self.runtimes)
        if self.bus_running:
            await self.bus.start()
        if self.jwks is not None and "identity" in self.runtimes:
            await self.jwks.refresh(force=True)

    async def stop(self) -> None:
        await self.bus.stop()  # no more deliveries into services that are stopping
        for runtime in reversed(self.runtimes.values()):
            await runtime.stop()
        if self.fronted:
            await self.gateway.stop()
        await self.revocations.stop()
        await self.cache.close()
        flush_tracing()

    def trace_service_name(self) -> str:
        """`service.name` of this process's spans (`OTEL_SERVICE_NAME` overrides it)."""
        if len(self.runtimes) == 1:
            return f"paymesh-{next(iter(self.runtimes))}"
        return "paymesh" if self.runtimes else "paymesh-gateway"

    def asyncapi(self) -> dict[str, Any]:
        """Every service's events, wherever it runs: the platform's event contract."""
        if self._asyncapi is None:
            running = {spec.name for spec in self.specs}
            specs = [load_spec(name) for name in SERVICE_MODULES if name not in running]
            self._asyncapi = asyncapi_document(
                [*self.specs, *specs],
                version=__version__,
                broker_url=self.settings.broker_url,
                namespace=self.settings.events.broker_namespace,
            )
        return self._asyncapi

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = decorate_openapi(self._merged_openapi())
        return self._openapi

    def _merged_openapi(self) -> dict[str, Any]:
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {
                "title": "Paymesh",
                "version": __version__,
                "description": "Every Paymesh service served from one origin.",
            },
            "paths": {},
            "components": {"schemas": {}, "securitySchemes": {}},
            "tags": [],
        }
        components = merged["components"]
        # Each document is already complete (kernel/openapi.py): problem documents,
        # security, the kernel's refusals, and hand-written paths such as SCIM's.
        for document in [self.service_apps[spec.name].openapi() for spec in self.specs]:
            for path, item in document.get("paths", {}).items():
                if path not in ("/health", "/ready", "/metrics"):
                    merged["paths"][path] = item
            for kind in ("schemas", "securitySchemes"):
                for name, value in document.get("components", {}).get(kind, {}).items():
                    components[kind].setdefault(name, value)
        root = self.root.openapi()
        merged["paths"].update(root.get("paths", {}))
        components["schemas"].update(root.get("components", {}).get("schemas", {}))
        tags = {spec.name: spec.description for spec in self.specs}
        for item in merged["paths"].values():
            for operation in item.values():
                for tag in operation.get("tags", ()) if isinstance(operation, dict) else ():
                    tags.setdefault(tag, "")
        merged["tags"] = [
            {"name": name, "description": text} if text else {"name": name}
            for name, text in tags.items()
        ]
        return merged

    def _root_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            settle_heap()
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(
            title="Paymesh",
            version=__version__,
            lifespan=lifespan,
            docs_url=None,
            redoc_url=None,
            openapi_url=None,
        )
        install_error_handlers(app)

        async def checks() -> dict[str, str]:
            results = {
                f"{name}.database": await database_check(runtime.database)
                for name, runtime in self.runtimes.items()
            }
            if self.settings.redis_url:
                results["redis"] = "ok" if await self.cache.ping() else "failed"
            if self.bus_running and isinstance(self.bus, BrokerBus):
                results["broker"] = "ok" if await self.bus.ready() else "failed"
            return results

        add_operational_routes(app, checks)
        install_openapi(app, decoding=False)

        @app.get("/openapi.json", include_in_schema=False)
        async def openapi() -> JSONResponse:
            return JSONResponse(self.openapi())

        install_docs(app, openapi_url="/openapi.json", title="Paymesh API")

        @app.get("/asyncapi.json", include_in_schema=False)
        async def asyncapi() -> JSONResponse:
            return JSONResponse(self.asyncapi())

        @app.get("/asyncapi", include_in_schema=False)
        async def asyncapi_html() -> HTMLResponse:
            return HTMLResponse(
                asyncapi_page(self.asyncapi()),
                headers={"content-security-policy": PAGE_SECURITY_POLICY},
            )

        if "providers" in self.runtimes and self.settings.env != "production":
            # The KYC vendor's simulator, outside the gateway like the vendor's own API, so
            # `make run` needs no second process (`paymesh serve kyc-simulator` otherwise).
            app.mount(SIMULATOR_PATH, build_kyc_simulator(self.settings))
            # The partner bank's, likewise (`paymesh serve bank-simulator` otherwise): the
            # default partner bank points at it (kernel/config/banks.py).
            app.mount(BANK_SIMULATOR_PATH, build_bank_simulator(self.settings))
        if "notifications" in self.runtimes:
            mount_notification_simulators(app, self.settings)

        @app.get("/", include_in_schema=False)
        async def index() -> dict[str, Any]:
            return {
                "name": "Paymesh",
                "version": __version__,
                "services": {spec.name: list(spec.prefixes) for spec in self.specs},
                "docs": "/docs",
                "redoc": "/redoc",
            }

        app.add_middleware(
            RequestContextMiddleware, service="platform", access_log=self.settings.access_log
        )
        return app
