"""Shared by the profiles and providers tests: a platform with identity, profiles and
providers; customers with real identity tokens (registration + password grant through the
gateway); loopback HTTP servers for the KYC simulator and for the platform itself, so the
simulator's callbacks arrive over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.types import ASGIApp

from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from tests.identity import factories as identity_factories

SERVICES = ["identity", "profiles", "providers"]
PASSWORD = "plum-orbit-candle-42"
NOWHERE = "http://127.0.0.1:1"  # nothing listens: the vendor is refused at once
T = TypeVar("T")
KEEP_ALIVE_SECONDS = 600


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp, sock: socket.socket, lifespan: str = "off", **options: Any
) -> AsyncIterator[None]:
    """`app` served by uvicorn on `sock`, in the test's event loop.

    Server and clients share that loop: when it stalls for longer than uvicorn's 5 s
    keep-alive (a loaded CI machine), the server's idle timer and a client's next request
    fall due in the same turn and the request meets a connection being closed (ReadError).
    The keep-alive here outlasts any test. `options` go to uvicorn (TLS, for example)."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            lifespan=lifespan,
            log_config=None,
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            **options,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()


def with_providers(settings: Settings, **fields: Any) -> Settings:
    providers = settings.providers.model_copy(update=fields)
    return settings.model_copy(update={"providers": providers})


@dataclass
class Customer:
    id: str
    username: str
    headers: dict[str, str]


_legacy_apps: dict[int, tuple[str, str]] = {}


async def legacy_app(platform: Platform) -> tuple[str, str]:
    """A confidential client allowed the password grant (one per platform)."""
    key = id(platform)
    if key not in _legacy_apps:
        created = await identity_factories.create_client(
            platform,
            public=False,
            grant_types=["password"],
            password_grant_allowed=True,
            scopes=["openid", "profile", "email"],
        )
        assert created.client_secret is not None
        _legacy_apps[key] = (created.client_id, created.client_secret)
    return _legacy_apps[key]


async def customer(
    platform: Platform, http: httpx.AsyncClient, username: str, **fields: Any
) -> Customer:
    """Register through the gateway and sign in with the password grant: a real identity
    token (RS256, from identity's keys) for a `customer`."""
    registered = await http.post(
        "/v1/identity/users", json={"username": username, "password": PASSWORD, **fields}
    )
    assert registered.status_code == 201, registered.text
    token = await http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": username, "password": PASSWORD},
        auth=await legacy_app(platform),
    )
    assert token.status_code == 200, token.text
    access = token.json()["access_token"]
    return Customer(registered.json()["id"], username, {"authorization": f"Bearer {access}"})


def bearer(platform: Platform, subject: str, *roles: str, **options: Any) -> dict[str, str]:
    """A development token (service and operator callers)."""
    return {"authorization": f"Bearer {platform.tokens.issue(subject, roles=roles, **options)}"}


def service(platform: Platform, name: str = "wallets") -> dict[str, str]:
    return bearer(platform, f"service-{name}", "service", client_id=f"service-{name}")


async def eventually(check: Callable[[], Awaitable[T | None]], within_seconds: float = 15.0) -> T:
    """The first truthy result of `check`, polled for `within_seconds`."""
    deadline = time.monotonic() + within_seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {within_seconds} s")
        await asyncio.sleep(0.05)


async def outbox(platform: Platform, service_name: str, prefix: str = "") -> list[dict[str, Any]]:
    """The events `service_name` wrote, oldest first (tests keep published rows)."""
    runtime = platform.runtimes[service_name]
    table = runtime.spec.tables.outbox
    async with runtime.database.transaction() as session:
        rows = await session.execute(table.select().order_by(table.c.created_at, table.c.id))
        return [row.envelope for row in rows if row.type.startswith(prefix)]


def kyc_body(document_number: str = "P12345678", **fields: Any) -> dict[str, Any]:
    return {
        "given_name": "Carol",
        "family_name": "Jones",
        "date_of_birth": "1988-02-29",
        "country": "GB",
        "document_type": "passport",
        "document_number": document_number,
        "document_country": "GB",
        **fields,
    }


def signed(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers a vendor holding `secret` would send (written here independently of the
    simulator, so a shared mistake cannot hide)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "kyc-timestamp": stamp,
        "kyc-signature": f"v1={digest}",
    }


def callback_body(check_id: str, vendor_check_id: str, status: str, event_id: str) -> bytes:
    reasons = [] if status == "verified" else [{"code": "document_expired", "detail": "x"}]
    return json.dumps(
        {
            "id": event_id,
            "type": "check.completed",
            "created_at": int(time.time()),
            "check": {
                "id": vendor_check_id,
                "reference": check_id,
                "status": status,
                "reasons": reasons,
            },
        }
    ).encode()


async def delivered(simulator: Any, count: int = 1) -> Any:
    """The simulator's last callback attempt, once it has recorded `count` of them (the
    receiver may act on a callback before the simulator has read the answer)."""

    async def recorded() -> Any:
        return simulator.deliveries[-1] if len(simulator.deliveries) >= count else None

    return await eventually(recorded)
