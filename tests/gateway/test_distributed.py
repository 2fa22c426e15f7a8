"""The gateway in the distributed shape: two `paymesh serve gateway` processes in front of
real service processes on loopback (identity, two ledger replicas, two forex replicas),
sharing Redis for revocations, rate limits, breaker state and the forex rate cache — each
checked across two processes — and the database for idempotency claims. Processes are
killed with SIGKILL, as a crash would."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from paymesh.kernel.auth import DevelopmentTokens
from paymesh.kernel.revocation import RedisRevocationFeed, Revocation
from tests.conftest import IN_CI, free_port

PAYMESH = Path(sys.executable).parent / "paymesh"
REDIS_URL = os.environ.get("PAYMESH_TEST_GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/9")
ACCOUNT = "/v1/ledger/accounts/acc_missing"
LIMITED = "/v1/ledger/accounts/acc_limited"
LIMITED_PER_MINUTE = 6


@dataclass
class Cluster:
    tmp: Path
    environment: dict[str, str]
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start(self, name: str, *arguments: str) -> None:
        with self.log(name).open("ab") as sink:
            self.processes[name] = subprocess.Popen(
                [str(PAYMESH), "serve", *arguments, "--port", str(self.ports[name])],
                cwd=self.tmp,
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, name: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            process = self.processes[name]
            assert process.poll() is None, self.log(name).read_text()
            try:
                if httpx.get(f"{self.url(name)}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{name} did not start:\n{self.log(name).read_text()}")

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def settled_count(self) -> int:
        """Requests the ledger replicas logged, once the count stops moving (0.3 s)."""
        count = -1
        for _ in range(20):
            seen = self.requests_seen_by("ledger-1") + self.requests_seen_by("ledger-2")
            if seen == count:
                break
            count = seen
            time.sleep(0.3)
        return count

    def requests_seen_by(self, name: str, path: str = ACCOUNT) -> int:
        """Requests for `path` in a service's access log (not the gateway's probes)."""
        return sum(
            1
            for line in self.log(name).read_text().splitlines()
            if '"event": "http_request"' in line and f'"path": "{path}"' in line
        )


def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is needed: {error}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    return client


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
) -> Iterator[Cluster]:
    store = _redis_or_skip()
    store.flushdb()  # this module's own database number: breaker and limit state of old runs
    tmp = tmp_path_factory.mktemp("distributed")
    names = ("identity", "ledger-1", "ledger-2", "forex-1", "forex-2", "gateway", "gateway-2")
    ports = {name: free_port() for name in names}
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith("PAYMESH_")},
        "PAYMESH_ENV": "test",
        "PAYMESH_SIGNING_SECRET": secrets.token_urlsafe(32),
        "PAYMESH_DATA_DIR": str(tmp / "var"),
        "PAYMESH_LOG_FORMAT": "json",
        "PAYMESH_REDIS_URL": REDIS_URL,
        "PAYMESH_IDENTITY_URL": f"http://127.0.0.1:{ports['identity']}",
        "PAYMESH_LEDGER_URL": (
            f"http://127.0.0.1:{ports['ledger-1']},http://127.0.0.1:{ports['ledger-2']}"
        ),
        "PAYMESH_FOREX_URL": (
            f"http://127.0.0.1:{ports['forex-1']},http://127.0.0.1:{ports['forex-2']}"
        ),
        "PAYMESH_GATEWAY_HEALTH_INTERVAL_SECONDS": "0.5",
        "PAYMESH_GATEWAY_BREAKER_THRESHOLD": "3",
        "PAYMESH_GATEWAY_BREAKER_TTL_SECONDS": "1",
        "PAYMESH_GATEWAY_ROUTES": json.dumps(
            [{"prefix": LIMITED, "exact": True, "per_minute": LIMITED_PER_MINUTE}]
        ),
    }
    if postgres_database:
        environment["PAYMESH_DATABASE_URL"] = postgres_database
    built = Cluster(tmp, environment, ports)
    try:
        built.start("identity", "identity")
        built.start("ledger-1", "ledger")
        built.wait_healthy("ledger-1")  # it migrated the ledger's tables
        built.start("ledger-2", "ledger", "--no-migrate")
        # One forex refreshes the rates into Redis; the other has no workers, so what it
        # answers can only come from the shared cache.
        built.start("forex-1", "forex")
        built.wait_healthy("forex-1")
        built.start("forex-2", "forex", "--no-migrate", "--no-workers")
        built.wait_healthy("identity")
        built.wait_healthy("ledger-2")
        built.wait_healthy("forex-2")
        built.start("gateway", "gateway")
        built.start("gateway-2", "gateway")
        built.wait_healthy("gateway")
        built.wait_healthy("gateway-2")
        yield built
    finally:
        built.stop_all()
        store.flushdb()


@pytest.fixture
def token(cluster: Cluster) -> str:
    tokens = DevelopmentTokens(cluster.environment["PAYMESH_SIGNING_SECRET"], "paymesh", "paymesh")
    return tokens.issue(f"user-{secrets.token_hex(4)}", roles=["admin"])


def get(
    cluster: Cluster, path: str, token: str, gateway: str = "gateway", **headers: str
) -> httpx.Response:
    return httpx.get(
        f"{cluster.url(gateway)}{path}",
        headers={"authorization": f"Bearer {token}", **headers},
        timeout=10,
    )


class TestThroughTheGateway:
    def test_a_request_id_survives_the_hop_to_a_service_and_back(
        self, cluster: Cluster, token: str
    ) -> None:
        response = get(cluster, ACCOUNT, token, **{"x-request-id": "req-distributed-1"})

        assert response.status_code == 404  # the ledger's answer
        assert response.headers["x-request-id"] == "req-distributed-1"
        assert response.json()["request_id"] == "req-distributed-1"  # as the ledger saw it
        assert response.headers["x-content-type-options"] == "nosniff"
        assert int(response.headers["ratelimit-limit"]) > 0

    def test_no_token_is_refused_at_the_edge(self, cluster: Cluster) -> None:
        before = cluster.settled_count()  # an earlier test's log lines may be on their way

        response = httpx.get(f"{cluster.url('gateway')}{ACCOUNT}", timeout=10)

        assert response.status_code == 401
        after = cluster.requests_seen_by("ledger-1") + cluster.requests_seen_by("ledger-2")
        assert after == before

    def test_replicas_take_turns(self, cluster: Cluster, token: str) -> None:
        before = [cluster.requests_seen_by(name) for name in ("ledger-1", "ledger-2")]

        for _ in range(10):
            assert get(cluster, ACCOUNT, token).status_code == 404

        def counted() -> list[int]:
            after = [cluster.requests_seen_by(name) for name in ("ledger-1", "ledger-2")]
            return [b - a for a, b in zip(before, after, strict=True)]

        deadline = time.monotonic() + 3  # the replicas' last log lines may still be on their way
        while sum(counted()) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counted() == [5, 5]

    def test_a_revoked_token_is_refused_within_five_seconds(
        self, cluster: Cluster, token: str
    ) -> None:
        assert get(cluster, ACCOUNT, token).status_code == 404
        subject = (
            DevelopmentTokens(cluster.environment["PAYMESH_SIGNING_SECRET"], "paymesh", "paymesh")
            .verify(token)
            .subject
        )
        now = time.time()

        async def publish() -> None:
            feed = RedisRevocationFeed(REDIS_URL, retention_seconds=960)
            try:
                await feed.publish(
                    [Revocation("subject", subject, not_before=now + 1, expires_at=now + 900)]
                )
            finally:
                await feed.close()

        asyncio.run(publish())
        deadline = time.monotonic() + 5

        def refused_by_the_gateway(response: httpx.Response) -> bool:
            # The gateway's refusal carries the RFC 6750 error code; a service's does not.
            challenge = response.headers.get("www-authenticate", "")
            return response.status_code == 401 and 'error="invalid_token"' in challenge

        for gateway in ("gateway", "gateway-2"):  # each reads the shared feed in Redis
            while not refused_by_the_gateway(get(cluster, ACCOUNT, token, gateway)):
                assert time.monotonic() < deadline, f"{gateway} still lets the revoked token in"
                time.sleep(0.1)
        seen = cluster.requests_seen_by("ledger-1") + cluster.requests_seen_by("ledger-2")
        assert refused_by_the_gateway(get(cluster, ACCOUNT, token))
        assert refused_by_the_gateway(get(cluster, ACCOUNT, token, "gateway-2"))
        assert cluster.requests_seen_by("ledger-1") + cluster.requests_seen_by("ledger-2") == seen

    def test_two_gateways_count_one_rate_limit(self, cluster: Cluster, token: str) -> None:
        """The route allows 6 a minute per caller: 5 through one gateway and 5 through the
        other make 6 answered and 4 refused, not 10 answered (counters in Redis)."""
        statuses = [get(cluster, LIMITED, token, "gateway").status_code for _ in range(5)]
        statuses += [get(cluster, LIMITED, token, "gateway-2").status_code for _ in range(5)]

        assert statuses.count(404) == LIMITED_PER_MINUTE  # reached the ledger: no such account
        assert statuses.count(429) == 10 - LIMITED_PER_MINUTE
        assert statuses[:5] == [404] * 5
        assert statuses[5:] == [404] + [429] * 4

    def test_a_forex_without_workers_answers_the_rates_the_other_refreshed(
        self, cluster: Cluster
    ) -> None:
        deadline = time.monotonic() + 20
        while True:  # forex-1's first refresh may still be running
            answers = [
                httpx.get(f"{cluster.url(name)}/v1/forex/rates/EURUSD", timeout=10)
                for name in ("forex-1", "forex-2")
            ]
            if all(answer.status_code == 200 for answer in answers):
                break
            assert time.monotonic() < deadline, [answer.text for answer in answers]
            time.sleep(0.2)
        assert answers[0].json() == answers[1].json()
        assert answers[1].json()["pair"] == "EURUSD"
        store = redis.Redis.from_url(REDIS_URL)
        assert any(b"forex" in key for key in store.scan_iter(count=1000))
        # Through either gateway, whichever replica answers.
        for gateway in ("gateway", "gateway-2"):
            for _ in range(2):
                through = httpx.get(f"{cluster.url(gateway)}/v1/forex/rates/EURUSD", timeout=10)
                assert through.json() == answers[0].json()

    def test_one_idempotency_key_on_two_replicas_creates_one_account(
        self, cluster: Cluster, token: str
    ) -> None:
        """The same key sent to both ledger replicas at once: one creates, the other waits
        its turn and replays, or is told the first is still running (409) — the claim lives
        in the shared database, not in either process (PostgreSQL: the distributed shape's
        database; SQLite processes each keep their own in-flight markers)."""
        if cluster.environment.get("PAYMESH_DATABASE_URL") is None:
            pytest.skip("replicas of one service share claims through PostgreSQL")
        account = f"acc_twice_{secrets.token_hex(4)}"
        body = {"id": account, "currency": "USD", "code": 1}

        async def both() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=10) as client:
                return list(
                    await asyncio.gather(
                        *(
                            client.post(
                                f"{cluster.url(name)}/v1/ledger/accounts",
                                json=body,
                                headers={
                                    "authorization": f"Bearer {token}",
                                    "idempotency-key": account,
                                },
                            )
                            for name in ("ledger-1", "ledger-2")
                        )
                    )
                )

        responses = asyncio.run(both())
        statuses = sorted(response.status_code for response in responses)
        assert statuses in ([201, 201], [201, 409]), [r.text for r in responses]
        if statuses == [201, 201]:
            replayed = [r.headers.get("idempotent-replayed") for r in responses]
            assert sorted(replayed, key=str) == [None, "true"]  # one ran, one replayed
            assert responses[0].json() == responses[1].json()
        found = get(cluster, f"/v1/ledger/accounts/{account}", token)
        assert found.status_code == 200

    def test_a_chunked_request_body_reaches_the_service(self, cluster: Cluster, token: str) -> None:
        account = f"acc_chunked_{secrets.token_hex(4)}"
        document = json.dumps({"id": account, "currency": "USD", "code": 1}).encode()

        def chunks() -> Iterator[bytes]:  # no length known: sent chunked
            yield document[:10]
            yield document[10:]

        response = httpx.post(
            f"{cluster.url('gateway')}/v1/ledger/accounts",
            content=chunks(),
            headers={
                "authorization": f"Bearer {token}",
                "content-type": "application/json",
                "idempotency-key": account,
            },
            timeout=10,
        )

        assert response.status_code == 201, response.text
        assert response.json()["id"] == account


class TestFailures:
    def test_a_killed_replica_is_skipped(self, cluster: Cluster, token: str) -> None:
        cluster.kill("ledger-1")
        before = cluster.requests_seen_by("ledger-2")

        statuses = [get(cluster, ACCOUNT, token).status_code for _ in range(6)]

        assert statuses == [404] * 6  # a refused connection is retried on the other (GET)
        deadline = time.monotonic() + 3
        while cluster.requests_seen_by("ledger-2") - before < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cluster.requests_seen_by("ledger-2") - before == 6

    def test_the_breaker_opens_when_the_service_is_gone_and_closes_when_it_returns(
        self, cluster: Cluster, token: str
    ) -> None:
        if "ledger-1" in cluster.processes:
            cluster.kill("ledger-1")
        cluster.kill("ledger-2")
        time.sleep(1.0)  # the health probes see both gone

        refusals = [get(cluster, ACCOUNT, token) for _ in range(5)]

        assert {response.status_code for response in refusals} == {503}
        assert {response.json()["code"] for response in refusals} == {"upstream_unavailable"}
        assert "refused until it recovers" in refusals[-1].json()["detail"]  # open: fast
        # The other gateway has not failed once itself: the breaker it reads is the shared one.
        other = get(cluster, ACCOUNT, token, "gateway-2")
        assert other.status_code == 503
        assert "refused until it recovers" in other.json()["detail"]

        cluster.start("ledger-2", "ledger", "--no-migrate")
        cluster.wait_healthy("ledger-2")
        deadline = time.monotonic() + 10
        status = 503
        while status != 404 and time.monotonic() < deadline:
            time.sleep(0.2)
            status = get(cluster, ACCOUNT, token).status_code
        assert status == 404  # probed, half-open, closed
