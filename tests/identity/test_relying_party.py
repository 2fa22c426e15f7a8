"""An independent, certified relying party (`openid-client` from npm) drives `paymesh
serve identity` over real HTTP: discovery, authorization code + PKCE with state and nonce
(logging in through the HTML form like a browser), ID token validation, userinfo,
refresh, introspection, revocation and client credentials.

The users and the client are made with the operator CLI. `make test` installs the relying
party (`npm ci` in tests/identity/rp) when node is present; in CI it must be.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import IN_CI, _asyncpg_dsn, free_port
from tests.test_cli import PAYMESH, cli_env, run_cli

pytestmark = pytest.mark.slow

RP = Path(__file__).parent / "rp"
PASSWORD = "rp-test-password-9"
REDIRECT_URI = "http://127.0.0.1:9/callback"


def _node() -> str:
    node = shutil.which("node")
    ready = node is not None and (RP / "node_modules" / "openid-client").is_dir()
    if not ready:
        message = "node and tests/identity/rp/node_modules are needed (make test runs npm ci)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert node is not None
    return node


def _drop_identity_schema(database_url: str) -> None:
    async def drop() -> None:
        connection = await asyncpg.connect(_asyncpg_dsn(database_url))
        try:
            await connection.execute('DROP SCHEMA IF EXISTS "identity" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


@pytest.fixture
def environment(tmp_path: Path, postgres_database: str | None) -> Iterator[dict[str, str]]:
    port = free_port()
    extra = {"PAYMESH_PUBLIC_URL": f"http://127.0.0.1:{port}", "PAYMESH_PORT": str(port)}
    if postgres_database:
        extra["PAYMESH_DATABASE_URL"] = postgres_database
        _drop_identity_schema(postgres_database)
    yield cli_env(tmp_path / "var", **extra)
    if postgres_database:
        _drop_identity_schema(postgres_database)


def _provision(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    user = run_cli(
        "identity",
        "create-user",
        "--username",
        "rp-alice",
        "--password",
        PASSWORD,
        "--role",
        "customer",
        "--email",
        "rp-alice@example.com",
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert user.returncode == 0, user.stderr
    client = run_cli(
        "identity",
        "create-client",
        "--name",
        "RP test app",
        "--confidential",
        "--first-party",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--grant",
        "client_credentials",
        "--redirect-uri",
        REDIRECT_URI,
        "--scope",
        "openid profile email offline_access ledger:read",
        "--role",
        "auditor",
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert client.returncode == 0, client.stderr
    created = json.loads(client.stdout)
    return {"client_id": created["client_id"], "client_secret": created["client_secret"]}


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"identity did not start:\n{log.read_text()}")


class TestCertifiedRelyingParty:
    def test_openid_client_runs_every_flow(
        self, tmp_path: Path, environment: dict[str, str]
    ) -> None:
        node = _node()
        client = _provision(tmp_path, environment)
        base_url = environment["PAYMESH_PUBLIC_URL"]
        log = tmp_path / "identity.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(PAYMESH), "serve", "identity", "--port", environment["PAYMESH_PORT"]],
                cwd=tmp_path,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_healthy(process, base_url, log)
            rp = subprocess.run(
                [node, str(RP / "relying_party.mjs")],
                env={
                    "PATH": environment.get("PATH", ""),
                    "ISSUER": base_url,
                    "CLIENT_ID": client["client_id"],
                    "CLIENT_SECRET": client["client_secret"],
                    "REDIRECT_URI": REDIRECT_URI,
                    "USERNAME": "rp-alice",
                    "PASSWORD": PASSWORD,
                },
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            process.terminate()
            process.wait(timeout=15)
        assert rp.returncode == 0, f"{rp.stderr}\n--- server log ---\n{log.read_text()}"
        seen = json.loads(rp.stdout.strip().splitlines()[-1])

        assert seen["issuer"] == base_url
        assert seen["id_token"]["aud"] == client["client_id"]
        assert seen["id_token"]["at_hash"]
        assert seen["userinfo"]["preferred_username"] == "rp-alice"
        assert seen["userinfo"]["email"] == "rp-alice@example.com"
        assert seen["introspection"]["active"] is True
        assert seen["introspection"]["sub"] == seen["id_token"]["sub"]
        assert seen["after_revocation"] == {"active": False}
        assert seen["refresh_after_revocation"] == "invalid_grant"
        assert seen["client_credentials"]["active"] is True
        assert seen["client_credentials"]["roles"] == ["auditor"]

        output = log.read_text()
        assert '"path": "/oauth2/token"' in output or "/oauth2/token" in output
        for secret in (PASSWORD, client["client_secret"]):
            assert secret not in output, "a secret reached the server log"
