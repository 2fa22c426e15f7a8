"""Builds a service's FastAPI app: routes in a unit of work, problem documents, request
context, and the operational endpoints `/health`, `/ready` and `/metrics`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from paymesh import __version__
from paymesh.kernel.db import Database
from paymesh.kernel.dead_letters import dead_letter_router
from paymesh.kernel.decoding import RequestDecoding
from paymesh.kernel.errors import install_error_handlers, problem_response
from paymesh.kernel.observability import RequestContextMiddleware
from paymesh.kernel.openapi import install_openapi
from paymesh.kernel.routing import ServiceRoute
from paymesh.kernel.runtime import ServiceRuntime

FastHandler = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_MEDIA = b"application/json"
FORM_MEDIA = b"application/x-www-form-urlencoded"


@dataclass(frozen=True)
class FastRoute:
    """A fast handler and the one media type of the bodies it takes (a plain handler in a
    service's `fast_paths` takes JSON); `takes_idempotency_key`: it also serves requests
    that carry an Idempotency-Key, under the kernel's contract (kernel/fastpath.py)."""

    handler: FastHandler
    media_type: bytes = JSON_MEDIA
    takes_idempotency_key: bool = False


class FastPaths:
    """Serves a service's few hottest (method, path) pairs as plain ASGI handlers, without
    FastAPI's routing and dependency machinery; everything else goes to the FastAPI app,
    where the same route is declared for the OpenAPI document. A request with a body of
    another media type than the handler's always takes the FastAPI route, and so does one
    that carries an Idempotency-Key unless the handler takes keys."""

    def __init__(
        self,
        app: FastAPI,
        handlers: dict[tuple[str, str], FastHandler | FastRoute],
        runtime: ServiceRuntime,
    ) -> None:
        self.app = app
        routes = {
            key: found if isinstance(found, FastRoute) else FastRoute(found)
            for key, found in handlers.items()
        }
        self.handlers = {
            key: (
                RequestContextMiddleware(
                    request_decoding(route.handler, runtime),
                    service=runtime.name,
                    access_log=runtime.settings.access_log,
                ),
                route.media_type,
                route.takes_idempotency_key,
            )
            for key, route in routes.items()
        }
        self.routes = {key: SimpleNamespace(path=key[1]) for key in handlers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = (scope["method"], scope["path"])
            found = self.handlers.get(key)
            if found is not None and _plain_body_of(scope, found[1], found[2]):
                scope["route"] = self.routes[key]
                scope["app"] = self.app  # what `request.app` means on the FastAPI route
                await found[0](scope, receive, send)
                return
        await self.app(scope, receive, send)


def _plain_body_of(scope: Scope, media_type: bytes, takes_idempotency_key: bool) -> bool:
    """A body of `media_type`, and no Idempotency-Key unless the handler takes one."""
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"idempotency-key" and not takes_idempotency_key:
            return False
        if name == b"content-type":
            content_type = value
    return content_type.split(b";")[0].strip().lower() == media_type


def request_decoding(app: ASGIApp, runtime: ServiceRuntime) -> RequestDecoding:
    """`app` behind the request-decoding layer, with the service's body limits."""
    return RequestDecoding(
        app,
        max_body_bytes=runtime.settings.max_body_bytes,
        body_limits=runtime.spec.body_limits,
    )


def service_asgi(app: FastAPI, runtime: ServiceRuntime) -> ASGIApp:
    """The ASGI app that serves a service: its FastAPI app behind its fast paths."""
    if runtime.spec.fast_paths is None:
        return app
    return FastPaths(app, runtime.spec.fast_paths(runtime), runtime)


def service_router(**kwargs: Any) -> APIRouter:
    """The APIRouter every service uses: its routes run in a unit of work."""
    return APIRouter(route_class=ServiceRoute, **kwargs)


async def database_check(database: Database, timeout_seconds: float = 2.0) -> str:
    try:
        async with asyncio.timeout(timeout_seconds), database.read_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        return f"failed: {error.__class__.__name__}"
    return "ok"


def readiness_response(checks: dict[str, str]) -> Response:
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    return problem_response(
        {
            "type": "urn:paymesh:problem:not_ready",
            "title": "A dependency is not available",
            "status": 503,
            "code": "not_ready",
            "checks": checks,
        }
    )


def add_operational_routes(app: FastAPI, checks: Any) -> None:
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Liveness: the process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @router.get(
        "/ready",
        summary="Readiness: the databases this process uses answer",
        responses={
            503: {
                "description": "Not ready",
                "content": {"application/problem+json": {}},
                "x-problem-codes": ["not_ready"],
            }
        },
    )
    async def ready() -> Response:
        return readiness_response(await checks())

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(metrics_exposition(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)


def metrics_exposition() -> bytes:
    """This process's metrics; under `serve --processes N` (`PROMETHEUS_MULTIPROC_DIR`),
    every server process's, added up as each metric's multiprocess mode says."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return bytes(generate_latest())
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return bytes(generate_latest(registry))


def create_service_app(
    runtime: ServiceRuntime, *, manage_lifecycle: bool = True, run_workers: bool = True
) -> FastAPI:
    spec = runtime.spec

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await runtime.start(run_workers=run_workers)
        try:
            yield
        finally:
            if manage_lifecycle:
                await runtime.stop()

    app = FastAPI(
        title=f"Paymesh {spec.title}",
        description=spec.description,
        version=__version__,
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.token_verifier = runtime.token_verifier
    install_error_handlers(app)
    if runtime.consumers:
        # Operators list and replay what the consumers gave up on; first, so that a route
        # such as `/v1/profiles/{user_id}` does not take `/v1/profiles/dead-letters`.
        app.include_router(dead_letter_router(spec.name))
    for router in spec.routers:
        app.include_router(router)

    async def checks() -> dict[str, str]:
        return {f"{spec.name}.database": await database_check(runtime.database)}

    add_operational_routes(app, checks)
    install_openapi(app)
    # Added first, so it runs inside the request context (request id) and before routing.
    app.add_middleware(
        RequestDecoding,
        max_body_bytes=runtime.settings.max_body_bytes,
        body_limits=spec.body_limits,
    )
    app.add_middleware(
        RequestContextMiddleware, service=spec.name, access_log=runtime.settings.access_log
    )
    return app
