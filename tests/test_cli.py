"""The `paymesh` command as a user runs it: `make run` is `paymesh up --demo`.

These tests start real processes on SQLite files in a temporary directory, whichever
backend the rest of the pass uses.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from paymesh import __version__
from paymesh.kernel.config import Settings
from tests.conftest import free_port
from tests.tokens import jwt_claims

pytestmark = pytest.mark.slow

PAYMESH = Path(sys.executable).parent / "paymesh"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus any PAYMESH_ setting, so only `extra` applies."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAYMESH_")}
    env["PAYMESH_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PAYMESH), *args],
        cwd=cwd,  # a directory without a .env file
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def applied_revisions(database: Path) -> list[str]:
    assert database.is_file(), f"{database} was not created"
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT version_num FROM alembic_version_ledger").fetchall()
    return [row[0] for row in rows]


@pytest.fixture(autouse=True)
def console_script_exists() -> None:
    assert PAYMESH.is_file(), f"console script {PAYMESH} missing; install the project (make)"


class Server:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, base_url: str) -> None:
        self.process = process
        self.log = log
        self.base_url = base_url

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            code = self.process.poll()
            assert code is None, f"paymesh up exited early ({code}):\n{self.output()}"
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(
            f"/health did not answer 200 within {START_TIMEOUT_SECONDS} s:\n{self.output()}"
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    log = tmp_path / "paymesh-up.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(PAYMESH), "up", "--demo", "--port", str(port)],
            cwd=tmp_path,
            env=cli_env(tmp_path / "var"),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = Server(process, log, f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


class TestUp:
    def test_demo_serves_health_docs_and_api_then_stops_on_ctrl_c(
        self, server: Server, tmp_path: Path
    ) -> None:
        server.wait_until_healthy()

        health = httpx.get(f"{server.base_url}/health", timeout=5)
        assert health.json()["status"] == "ok"
        ready = httpx.get(f"{server.base_url}/ready", timeout=5)
        assert ready.status_code == 200, ready.text

        docs = httpx.get(f"{server.base_url}/docs", timeout=5)
        assert docs.status_code == 200
        assert docs.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in docs.text

        document = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
        assert document["openapi"].startswith("3.1")
        assert [path for path in document["paths"] if path.startswith("/v1/")]

        metrics = httpx.get(f"{server.base_url}/metrics", timeout=5)
        assert metrics.status_code == 200

        assert list((tmp_path / "var").glob("*.db")), "no SQLite file under PAYMESH_DATA_DIR"

        server.process.send_signal(signal.SIGINT)
        try:
            code = server.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_TIMEOUT_SECONDS} s after SIGINT:\n{server.output()}")
        assert code == 0, f"exit code {code} after SIGINT:\n{server.output()}"

    def test_production_refuses_the_default_signing_secret(self, tmp_path: Path) -> None:
        result = run_cli(
            "up",
            "--port",
            str(free_port()),
            cwd=tmp_path,
            env=cli_env(tmp_path / "var", PAYMESH_ENV="production"),
        )
        assert result.returncode != 0
        assert "PAYMESH_SIGNING_SECRET" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "var").exists(), "nothing may be created before refusing"

    def test_refuses_a_broker_it_has_no_bus_for(self, tmp_path: Path) -> None:
        env = cli_env(tmp_path / "var", PAYMESH_BROKER_URL="mqtt://127.0.0.1:1883")
        result = run_cli("up", "--port", str(free_port()), cwd=tmp_path, env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "PAYMESH_BROKER_URL" in result.stderr
        assert "Traceback" not in result.stderr


class TestPublicUrl:
    """`paymesh up --port 8611` advertises (and signs tokens with) port 8611."""

    @pytest.fixture(autouse=True)
    def _no_paymesh_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in list(os.environ):
            if name.startswith("PAYMESH_") and not name.startswith("PAYMESH_TEST_"):
                monkeypatch.delenv(name)

    def test_follows_the_port_and_host_given_on_the_command_line(self) -> None:
        settings = Settings(_env_file=None).listening_on(None, 8611)  # type: ignore[call-arg]
        assert settings.origin == "http://127.0.0.1:8611"
        assert settings.issuer == "http://127.0.0.1:8611"
        moved = Settings(_env_file=None).listening_on("127.0.0.2", 9000)  # type: ignore[call-arg]
        assert moved.issuer == "http://127.0.0.2:9000"

    def test_a_wildcard_interface_is_advertised_as_loopback(self) -> None:
        settings = Settings(_env_file=None).listening_on("0.0.0.0", 8611)  # type: ignore[call-arg]
        assert settings.origin == "http://127.0.0.1:8611"
        ipv6 = Settings(_env_file=None).listening_on("::", 8611)  # type: ignore[call-arg]
        assert ipv6.origin == "http://[::1]:8611"

    def test_public_url_and_identity_issuer_win_over_the_address(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PAYMESH_PUBLIC_URL", "https://pay.example.com/")
        settings = Settings(_env_file=None).listening_on("0.0.0.0", 8611)  # type: ignore[call-arg]
        assert settings.origin == "https://pay.example.com"
        assert settings.issuer == "https://pay.example.com"
        monkeypatch.setenv("PAYMESH_IDENTITY_ISSUER", "https://id.example.com")
        settings = Settings(_env_file=None).listening_on(None, 8611)  # type: ignore[call-arg]
        assert settings.issuer == "https://id.example.com"

    def test_up_serves_discovery_and_tokens_on_the_chosen_port(self, server: Server) -> None:
        server.wait_until_healthy()
        assert not server.base_url.endswith(":8000")

        discovery = httpx.get(f"{server.base_url}/.well-known/openid-configuration", timeout=5)
        document = discovery.json()
        assert document["issuer"] == server.base_url
        endpoints = [value for key, value in document.items() if key.endswith("_endpoint")]
        assert endpoints and all(url.startswith(server.base_url + "/") for url in endpoints)
        assert document["jwks_uri"] == f"{server.base_url}/oauth2/jwks"

        token = httpx.post(
            f"{server.base_url}/oauth2/token",
            auth=("demo-legacy", "demo-legacy-secret"),
            data={
                "grant_type": "password",
                "username": "alice",
                "password": "paymesh-demo-password",
                "scope": "openid",
            },
            timeout=10,
        )
        assert token.status_code == 200, token.text
        assert jwt_claims(token.json()["access_token"])["iss"] == server.base_url
        assert jwt_claims(token.json()["id_token"])["iss"] == server.base_url
        # The token the platform minted is accepted by the platform it came from.
        me = httpx.get(
            f"{server.base_url}/v1/identity/users/me",
            headers={"authorization": f"Bearer {token.json()['access_token']}"},
            timeout=5,
        )
        assert me.status_code == 200, me.text


class TestVersion:
    def test_prints_the_package_version(self, tmp_path: Path) -> None:
        result = run_cli("version", cwd=tmp_path, env=cli_env(tmp_path / "var"))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"paymesh {__version__}"

    def test_json(self, tmp_path: Path) -> None:
        result = run_cli("version", "--json", cwd=tmp_path, env=cli_env(tmp_path / "var"))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"version": __version__}


class TestMigrate:
    def test_is_idempotent(self, tmp_path: Path) -> None:
        env = cli_env(tmp_path / "var")
        first = run_cli("migrate", cwd=tmp_path, env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "ledger" in first.stderr.split("migrated:", 1)[1]
        database = tmp_path / "var" / "ledger.db"
        applied = applied_revisions(database)
        assert len(applied) == 1, applied

        second = run_cli("migrate", cwd=tmp_path, env=env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "ledger" in second.stderr.split("migrated:", 1)[1]
        assert applied_revisions(database) == applied

    def test_unknown_service_is_a_usage_error(self, tmp_path: Path) -> None:
        result = run_cli("migrate", "nosuchservice", cwd=tmp_path, env=cli_env(tmp_path / "var"))
        assert result.returncode == 2
        assert "unknown service" in result.stdout + result.stderr


class TestIdentityCommands:
    def test_the_readme_native_app_client_is_created(self, tmp_path: Path) -> None:
        result = run_cli(
            "identity",
            "create-client",
            "--name",
            "Mobile app",
            "--public",
            "--first-party",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--redirect-uri",
            "com.example.app://cb",
            "--scope",
            "openid",
            "--json",
            cwd=tmp_path,
            env=cli_env(tmp_path / "var"),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        created = json.loads(result.stdout)
        assert created["redirect_uris"] == ["com.example.app://cb"]
        assert created["public"] is True
        assert created["client_secret"] is None
