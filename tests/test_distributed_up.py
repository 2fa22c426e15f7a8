"""`paymesh up --distributed`: every service in a process of its own behind the gateway, on
PostgreSQL and NATS JetStream here; a sign-up through the gateway reaches profiles and
audit through the broker; SIGTERM stops every process it started. Without a broker it
refuses to start. Serial and PostgreSQL only: eleven processes and their connections."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest

from paymesh.kernel.auth import DevelopmentTokens
from paymesh.platform import SERVICE_MODULES
from tests.conftest import _asyncpg_dsn, _drop_schemas, free_port
from tests.kernel.test_brokers import IN_CI, NATS_URL

PAYMESH = Path(sys.executable).parent / "paymesh"


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("PAYMESH_")},
        "PAYMESH_ENV": "test",
        "PAYMESH_SIGNING_SECRET": secrets.token_urlsafe(32),
        "PAYMESH_DATA_DIR": str(tmp_path / "var"),
        "PAYMESH_LOG_LEVEL": "WARNING",
        **settings,
    }


def test_it_refuses_to_start_without_a_broker(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(PAYMESH), "up", "--distributed", "--port", str(free_port())],
        env=environment(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PAYMESH_BROKER_URL" in result.stderr
    assert "Traceback" not in result.stderr


def _profile_count(database_url: str, user_id: str) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(_asyncpg_dsn(database_url))
        try:
            found = await connection.fetchval(
                "SELECT count(*) FROM profiles.profiles_profile WHERE user_id = $1", user_id
            )
            return int(found)
        finally:
            await connection.close()

    return asyncio.run(count())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.serial
def test_every_service_runs_in_its_own_process_behind_the_gateway(
    tmp_path: Path, postgres_database: str | None
) -> None:
    if postgres_database is None:
        pytest.skip("the distributed shape runs on PostgreSQL (the PostgreSQL pass)")
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=2).close()
    except OSError:
        if IN_CI:
            pytest.fail("NATS is required in CI")
        pytest.skip("NATS is not reachable")
    # Fresh schemas: identity's stored keys are sealed with another run's signing secret.
    asyncio.run(_drop_schemas(postgres_database, list(SERVICE_MODULES)))
    port = free_port()
    namespace = f"t{uuid.uuid4().hex[:12]}"
    log = tmp_path / "up.log"
    up_environment = environment(
        tmp_path,
        PAYMESH_DATABASE_URL=postgres_database,
        PAYMESH_BROKER_URL=NATS_URL,
        PAYMESH_EVENTS_BROKER_NAMESPACE=namespace,
        PAYMESH_GATEWAY_RATE_LIMITS="false",
    )
    with log.open("wb") as sink:
        up = subprocess.Popen(
            [str(PAYMESH), "up", "--distributed", "--port", str(port)],
            env=up_environment,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops them all" not in log.read_text(errors="replace"):
            assert up.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        pids = [int(pid) for pid in re.findall(r"pid (\d+)", log.read_text(errors="replace"))]
        assert len(pids) == 11  # ten services and the gateway

        gateway = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{gateway}/ready", timeout=10).status_code == 200
        identity = f"http://127.0.0.1:{port + 1}"  # the first service above the gateway
        checks = httpx.get(f"{identity}/ready", timeout=10).json()["checks"]
        assert checks == {"identity.database": "ok", "broker": "ok"}
        signed_up = httpx.post(
            f"{gateway}/v1/identity/users",
            json={"username": f"u{secrets.token_hex(5)}", "password": "plum-orbit-candle-42"},
            timeout=30,
        )
        assert signed_up.status_code == 201, signed_up.text
        user_id = signed_up.json()["id"]
        deadline = time.monotonic() + 60
        while _profile_count(postgres_database, user_id) == 0:
            assert time.monotonic() < deadline, "identity.user.registered never reached profiles"
            time.sleep(0.25)

        # A call between services (wallets -> ledger) with identity's service tokens: every
        # process must agree on identity's issuer (the gateway's origin).
        tokens = DevelopmentTokens(up_environment["PAYMESH_SIGNING_SECRET"], "paymesh", "paymesh")
        opened = httpx.post(
            f"{gateway}/v1/wallets",
            json={"currency": "EUR"},
            headers={
                "authorization": f"Bearer {tokens.issue(user_id, roles=['customer'])}",
                "idempotency-key": f"open-{user_id}",
            },
            timeout=30,
        )
        assert opened.status_code == 201, opened.text

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0, log.read_text(errors="replace")
        assert [pid for pid in pids if _alive(pid)] == []
    finally:
        if up.poll() is None:
            up.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        _delete_streams(namespace)
        asyncio.run(_drop_schemas(postgres_database, list(SERVICE_MODULES)))


def _delete_streams(namespace: str) -> None:
    async def delete() -> None:
        client = await nats.connect(NATS_URL)
        try:
            jetstream = client.jetstream()
            for stream in await jetstream.streams_info():
                if stream.config.name and stream.config.name.startswith(f"{namespace}-"):
                    await jetstream.delete_stream(stream.config.name)
        finally:
            await client.close()

    asyncio.run(delete())
