"""The distributed shape with events on a real broker: the gateway, identity, profiles,
ledger, wallets, notifications and audit as separate `paymesh serve` processes on
PostgreSQL, Redis and RabbitMQ. A sign-up through the gateway reaches the three consuming
services through RabbitMQ; a wallet deposit (wallets calling the ledger over HTTP) produces
its notification and audit record; with the broker stopped, sign-ups still succeed (their
events wait in identity's outbox) and once it is back every event arrives — nothing lost,
nothing twice.

Serial: it stops and starts the machine's RabbitMQ (`rabbitmqctl stop_app`), which no
other test may be using at the time. PostgreSQL only: that is the distributed shape."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from paymesh.kernel.auth import DevelopmentTokens
from paymesh.platform import SERVICE_MODULES
from tests.conftest import IN_CI, _asyncpg_dsn, _drop_schemas, free_port
from tests.gateway.test_distributed import Cluster
from tests.kernel.test_brokers import RABBIT_URL

pytestmark = pytest.mark.serial

SERVICES = ("identity", "profiles", "ledger", "wallets", "notifications", "audit")
REDIS_URL = os.environ.get("PAYMESH_TEST_EVENTS_REDIS_URL", "redis://127.0.0.1:6379/10")
PASSWORD = "plum-orbit-candle-42"


def _rabbitmqctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", *arguments], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
) -> Iterator[Cluster]:
    if postgres_database is None:
        pytest.skip("the distributed shape runs on PostgreSQL (the PostgreSQL pass)")
    if shutil.which("rabbitmqctl") is None:
        if IN_CI:
            pytest.fail("rabbitmqctl is needed to stop and start the broker")
        pytest.skip("rabbitmqctl is not installed")
    tmp = tmp_path_factory.mktemp("distributed-events")
    ports = {name: free_port() for name in (*SERVICES, "gateway")}
    namespace = f"t{uuid.uuid4().hex[:12]}"
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith("PAYMESH_")},
        "PAYMESH_ENV": "test",
        "PAYMESH_SIGNING_SECRET": secrets.token_urlsafe(32),
        "PAYMESH_DATA_DIR": str(tmp / "var"),
        "PAYMESH_DATABASE_URL": postgres_database,
        "PAYMESH_REDIS_URL": REDIS_URL,
        "PAYMESH_BROKER_URL": RABBIT_URL,
        "PAYMESH_EVENTS_BROKER_NAMESPACE": namespace,
        "PAYMESH_EVENTS_RELAY_INTERVAL_SECONDS": "0.1",
        "PAYMESH_GATEWAY_RATE_LIMITS": "false",
        # identity's issuer, the same in every process: the gateway's origin
        "PAYMESH_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
        "PAYMESH_GATEWAY_HEALTH_INTERVAL_SECONDS": "0.5",
        **{f"PAYMESH_{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}" for name in SERVICES},
    }
    built = Cluster(tmp, environment, ports)
    # Fresh schemas: identity's stored keys are sealed with another run's signing secret.
    asyncio.run(_drop_schemas(postgres_database, list(SERVICE_MODULES)))
    try:
        for name in SERVICES:
            built.start(name, name)
            built.wait_healthy(name)  # one at a time: each migrates its own schema
        built.start("gateway", "gateway")
        built.wait_healthy("gateway")
        yield built
    finally:
        built.stop_all()
        _rabbitmqctl("start_app")  # whatever happened, leave the broker running
        _delete_queues(namespace)
        asyncio.run(_drop_schemas(postgres_database, list(SERVICE_MODULES)))


def _delete_queues(namespace: str) -> None:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for name in listed.stdout.split():
        if name.startswith(f"{namespace}."):
            subprocess.run(
                ["rabbitmqctl", "delete_queue", name], check=False, capture_output=True, timeout=60
            )


def sign_up(cluster: Cluster) -> str:
    response = httpx.post(
        f"{cluster.url('gateway')}/v1/identity/users",
        json={
            "username": f"d{secrets.token_hex(5)}",
            "password": PASSWORD,
            "email": f"{secrets.token_hex(4)}@example.com",
        },
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def consequences(cluster: Cluster, user_id: str) -> dict[str, int]:
    """What each consuming service recorded of `user_id`'s sign-up, read in its schema."""

    async def read() -> dict[str, int]:
        connection = await asyncpg.connect(
            _asyncpg_dsn(cluster.environment["PAYMESH_DATABASE_URL"])
        )
        try:
            return {
                "profile": await connection.fetchval(
                    "SELECT count(*) FROM profiles.profiles_profile WHERE user_id = $1", user_id
                ),
                "audit": await connection.fetchval(
                    "SELECT count(*) FROM audit.audit_record "
                    "WHERE type = 'identity.user.registered' AND resource = $1",
                    user_id,
                ),
                "notification": await connection.fetchval(
                    "SELECT count(*) FROM notifications.notification "
                    "WHERE event_type = 'identity.user.registered' AND user_id = $1",
                    user_id,
                ),
            }
        finally:
            await connection.close()

    return asyncio.run(read())


def arrived(cluster: Cluster, user_ids: list[str], within: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = {user_id: consequences(cluster, user_id) for user_id in user_ids}
        if all(all(count >= 1 for count in counts.values()) for counts in seen.values()):
            return seen
        time.sleep(0.25)
    pytest.fail(f"not every consequence arrived: {seen}")


def test_a_sign_up_reaches_every_consuming_process_through_the_broker(cluster: Cluster) -> None:
    user_id = sign_up(cluster)
    seen = arrived(cluster, [user_id])
    assert seen[user_id] == {"profile": 1, "audit": 1, "notification": 1}
    ready = httpx.get(f"{cluster.url('profiles')}/ready", timeout=10).json()
    assert ready["checks"]["broker"] == "ok"


def test_a_wallet_deposit_produces_its_notification_and_audit_record(cluster: Cluster) -> None:
    user_id = sign_up(cluster)
    tokens = DevelopmentTokens(cluster.environment["PAYMESH_SIGNING_SECRET"], "paymesh", "paymesh")
    customer = {"authorization": f"Bearer {tokens.issue(user_id, roles=['customer'])}"}
    finance = {"authorization": f"Bearer {tokens.issue('usr_treasurer', roles=['finance'])}"}
    gateway = cluster.url("gateway")
    opened = httpx.post(
        f"{gateway}/v1/wallets",
        json={"currency": "USD"},
        headers={**customer, "idempotency-key": f"open-{user_id}"},
        timeout=30,
    )
    assert opened.status_code == 201, opened.text
    deposited = httpx.post(
        f"{gateway}/v1/wallets/{opened.json()['id']}/deposits",
        json={"amount": 2500, "reference": "top-up 1"},
        headers={**finance, "idempotency-key": f"deposit-{user_id}"},
        timeout=30,
    )
    assert deposited.status_code == 201, deposited.text

    async def recorded() -> tuple[int, int]:
        dsn = _asyncpg_dsn(cluster.environment["PAYMESH_DATABASE_URL"])
        connection = await asyncpg.connect(dsn)
        try:
            audited = await connection.fetchval(
                "SELECT count(*) FROM audit.audit_record WHERE type = 'wallets.deposit.completed'"
                " AND data::text LIKE '%' || $1 || '%'",
                user_id,
            )
            notified = await connection.fetchval(
                "SELECT count(*) FROM notifications.notification "
                "WHERE event_type = 'wallets.deposit.completed' AND user_id = $1",
                user_id,
            )
            return int(audited), int(notified)
        finally:
            await connection.close()

    deadline = time.monotonic() + 60
    while min(seen := asyncio.run(recorded())) < 1:
        assert time.monotonic() < deadline, f"audit and notification records: {seen}"
        time.sleep(0.25)
    assert seen[0] == 1
    assert seen[1] >= 1  # one per channel the owner has (email; push without a device fails)


def test_events_written_while_the_broker_is_down_arrive_once_it_is_back(cluster: Cluster) -> None:
    _rabbitmqctl("stop_app")
    try:
        during = [sign_up(cluster) for _ in range(3)]  # identity answers: its outbox waits
        time.sleep(1.0)  # the relay tries, fails and keeps the rows
        assert all(consequences(cluster, user_id)["profile"] == 0 for user_id in during)
    finally:
        _rabbitmqctl("start_app")
    after = sign_up(cluster)

    seen = arrived(cluster, [*during, after], within=90)
    assert all(counts == {"profile": 1, "audit": 1, "notification": 1} for counts in seen.values())
