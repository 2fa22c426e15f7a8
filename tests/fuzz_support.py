"""The platform that tests/test_fuzz.py fuzzes: every service, migrated once, served by
uvicorn on a loopback port from a background thread, with callers of every role.

Schemathesis drives the server synchronously over real HTTP (requests), so the platform
lives on its own event loop in its own thread: database pools, workers and the JWKS
cache stay on the loop that created them, whatever the test thread does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from paymesh.kernel.auth import ROLES, scopes_granted_by
from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from tests.conftest import _drop_schemas
from tests.identity import factories

T = TypeVar("T")

# Long enough for `make fuzz` runs with many examples; dev tokens are minted locally.
TOKEN_TTL_SECONDS = 4 * 3600
STARTUP_TIMEOUT_SECONDS = 60
# What the admin user's browser app asks for: its own claims and every API (the admin
# role grants them all).
SCIM_USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
USER_TOKEN_SCOPES = ["openid", "profile", "ledger", "identity:admin"]


def schema_document(data_dir: Path) -> dict[str, Any]:
    """The merged OpenAPI document, built without a database (for test collection)."""
    settings = Settings(_env_file=None, env="test", data_dir=data_dir, access_log=False)
    return Platform(settings).openapi()


# Every caller a request can go out as; the identity-issued tokens are minted at start.
CALLERS = (
    "anonymous",
    *(f"dev-{role}" for role in ROLES),
    "identity-admin-client",
    "identity-admin-user",
)
# How often each caller is picked: the callers that may do everything come up more, so
# most cases get past authorization, while every role still gets its share.
WEIGHTS = {"dev-admin": 3, "identity-admin-client": 2, "identity-admin-user": 2}
CALLER_SLOTS = tuple(name for name in CALLERS for _ in range(WEIGHTS.get(name, 1)))


@dataclass
class Identities:
    """Authorization headers by caller name; `anonymous` sends none."""

    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def pick(self, key: bytes) -> str:
        """A caller chosen by a stable hash of the request, so a replayed case goes out
        with the same caller as long as its data is the same (for the cases Schemathesis
        builds without Hypothesis drawing a caller: its coverage phase and examples)."""
        digest = int.from_bytes(hashlib.sha256(key).digest()[:4], "big")
        return CALLER_SLOTS[digest % len(CALLER_SLOTS)]


@dataclass
class Known:
    """Ids of rows that exist, offered to the fuzzer in place of path parameters."""

    ids: dict[str, list[str]] = field(default_factory=dict)


class FuzzServer:
    """Every Paymesh service in one platform behind a real uvicorn server."""

    def __init__(self, data_dir: Path, postgres_database: str | None) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto
        # says TCP, and without it every keep-alive response waits ~40 ms for an ACK.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.postgres_database = postgres_database
        self.settings = Settings(
            _env_file=None,
            env="test",
            data_dir=data_dir,
            database_url=postgres_database,
            public_url=self.url,
            access_log=False,
            # Identity's tokens outlive a long `make fuzz` run, like the dev tokens.
            identity={"access_token_ttl_seconds": TOKEN_TTL_SECONDS},
            # Thousands of requests from one address: the limits would answer most of them
            # (tests/gateway covers the 429s); the fuzzer is after what lies behind.
            gateway={"rate_limits": False},
        )
        self.platform = Platform(self.settings)
        self.loop = asyncio.new_event_loop()
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.platform,
                lifespan="on",
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        )
        self.thread = threading.Thread(target=self._run, name="fuzz-server", daemon=True)
        self.failure: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as error:  # reported to the test thread by start()
            self.failure = error

    async def _serve(self) -> None:
        if self.postgres_database:
            await _drop_schemas(self.postgres_database, list(self.platform.runtimes))
        await self.platform.migrate()
        await self.server.serve(sockets=[self.sock])

    def start(self) -> None:
        self.thread.start()
        deadline = STARTUP_TIMEOUT_SECONDS * 20
        for _ in range(deadline):
            if self.server.started or self.failure is not None or not self.thread.is_alive():
                break
            self.thread.join(0.05)
        if not self.server.started:
            raise RuntimeError(f"the fuzz server did not start: {self.failure!r}")
        risk = self.platform.runtimes.get("risk")
        if risk is not None and risk.spec.seed_demo is not None:
            # A sanctions list, or every screening and evaluation is 503 no_sanctions_list
            # (risk fails closed) and the fuzzer never reaches what lies behind.
            self.run(risk.spec.seed_demo(risk))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        if self.postgres_database:
            asyncio.run(_drop_schemas(self.postgres_database, list(self.platform.runtimes)))

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the server's loop (where the platform's pools live)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    # --- callers -------------------------------------------------------------------------

    def identities(self) -> Identities:
        """A development token per role, an identity-issued client-credentials token of an
        admin service client, and an identity-issued user token of an admin user (the
        authorization code flow with PKCE, as a browser app would get it)."""
        tokens = self.platform.tokens
        headers: dict[str, dict[str, str]] = {"anonymous": {}}
        for role in ROLES:
            # A user's token with every scope its role grants: what a client gets when
            # it asks for everything on this user's behalf.
            token = tokens.issue(
                f"fuzz-{role}",
                roles=[role],
                scopes=scopes_granted_by([role]),
                ttl_seconds=TOKEN_TTL_SECONDS,
            )
            headers[f"dev-{role}"] = bearer(token)
        headers["identity-admin-client"] = bearer(self._client_credentials_token())
        headers["identity-admin-user"] = bearer(asyncio.run(self._user_token()))
        assert sorted(headers) == sorted(CALLERS)
        return Identities(headers)

    def _client_credentials_token(self) -> str:
        created = self.run(
            factories.create_client(
                self.platform,
                name="fuzz admin service",
                public=False,
                grant_types=["client_credentials"],
                roles=["admin"],
                redirect_uris=[],
                scopes=[],
            )
        )
        assert created.client_secret is not None
        response = httpx.post(
            f"{self.url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(created.client_id, created.client_secret),
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    async def _user_token(self) -> str:
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(
                factories.create_user(self.platform, "fuzz-admin", roles=["admin"]), self.loop
            )
        )
        app = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(
                factories.create_client(self.platform, scopes=USER_TOKEN_SCOPES), self.loop
            )
        )
        pkce = factories.Pkce.make()
        async with httpx.AsyncClient(base_url=self.url) as client:
            scope = " ".join(USER_TOKEN_SCOPES)
            params = factories.authorize_params(app.client_id, pkce, scope=scope)
            answer = await factories.login(client, params, username="fuzz-admin")
            code = factories.redirect_query(answer)["code"]
            response = await factories.exchange_code(client, app.client_id, code, pkce.verifier)
        response.raise_for_status()
        return str(response.json()["access_token"])

    # --- rows the fuzzer can hit ------------------------------------------------------------

    def seed(self, admin: dict[str, str]) -> Known:
        """A few rows for path parameters to name, so operations get past 404."""
        known = Known()
        with httpx.Client(base_url=self.url, headers=admin) as client:
            accounts = []
            for name in ("fuzz_a", "fuzz_b"):
                response = client.post("/v1/ledger/accounts", json={"id": name, "currency": "USD"})
                assert response.status_code in (200, 201), response.text
                accounts.append(name)
            transfers = []
            for number, pending in enumerate((True, True, False)):
                body = {
                    "id": f"fuzz_txf_{number}",
                    "debit_account_id": "fuzz_a",
                    "credit_account_id": "fuzz_b",
                    "amount": 100,
                    "currency": "USD",
                    "pending": pending,
                }
                response = client.post("/v1/ledger/transfers", json=body)
                assert response.status_code in (200, 201), response.text
                transfers.append(body["id"])
            user = self.run(factories.create_user(self.platform, "fuzz-victim"))
            victim = self.run(
                factories.create_client(
                    self.platform,
                    name="fuzz victim",
                    public=False,
                    grant_types=["client_credentials"],
                    redirect_uris=[],
                    scopes=[],
                )
            )
        known.ids = {
            "account_id": accounts,
            "transfer_id": transfers,
            "user_id": [user.id],
            "client_id": [victim.client_id],
            # SCIM's `{id}`: a user, groups (roles; never admin, whose members are the
            # fuzzer's own admin user), a resource type and a schema.
            "id": [user.id, "customer", "finance", "User", SCIM_USER_SCHEMA],
        }
        return known


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def running(data_dir: Path, postgres_database: str | None) -> Iterator[FuzzServer]:
    server = FuzzServer(data_dir, postgres_database)
    server.start()
    try:
        yield server
    finally:
        server.stop()
