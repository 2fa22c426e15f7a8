"""The whole platform as a real process for the crash tests: `paymesh up --demo` started
with a fault injection (`PAYMESH_PAYMENTS_CRASH_AT`), killed by it, and started again on
the same database; and the HTTP calls a customer and an operator make to it.

The database is the pass's: SQLite files in the test's directory, or, on the PostgreSQL
pass, the session's test database with every service's schema dropped before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from paymesh.kernel.auth import DevelopmentTokens
from paymesh.platform import SERVICE_MODULES
from tests.conftest import _drop_schemas, free_port

PAYMESH = Path(sys.executable).parent / "paymesh"
START_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 20
LEGACY = ("demo-legacy", "demo-legacy-secret")
DEMO_PASSWORD = "paymesh-demo-password"  # identity's documented demo credential
# Same-currency P2P is free by default; a fee makes the batch two transfers (amount, fee),
# so a crash between them or a replay of one would show in the balances.
PRICING = [{"type": "p2p", "currency": "USD", "basis_points": 100, "fixed": 10}]

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], seconds: float, what: str) -> T:
    """`probe()` until it answers something other than None, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s")
        time.sleep(0.1)


def drop_schemas(database_url: str | None) -> None:
    if database_url:
        asyncio.run(_drop_schemas(database_url, list(SERVICE_MODULES)))


class PaymeshUp:
    """`paymesh up --demo` on one port and one database, run as many times as needed."""

    def __init__(self, directory: Path, database_url: str | None) -> None:
        self.directory = directory
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.signing_secret = secrets.token_urlsafe(32)
        self.environment = {
            **{key: value for key, value in os.environ.items() if not key.startswith("PAYMESH_")},
            "PAYMESH_ENV": "test",
            "PAYMESH_SIGNING_SECRET": self.signing_secret,
            "PAYMESH_DATA_DIR": str(directory / "var"),
            "PAYMESH_ACCESS_LOG": "false",
            "PAYMESH_GATEWAY_RATE_LIMITS": "false",
            "PAYMESH_EVENTS_RELAY_INTERVAL_SECONDS": "0.05",
            "PAYMESH_PAYMENTS_RECOVERY_AFTER_SECONDS": "1",
            "PAYMESH_PAYMENTS_RECOVERY_INTERVAL_SECONDS": "0.5",
            "PAYMESH_PAYMENTS_PRICING": json.dumps(PRICING),
        }
        if database_url:
            self.environment["PAYMESH_DATABASE_URL"] = database_url
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.directory / f"paymesh-up-{self.runs}.log"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self) -> str:
        """The end of this run's log, for failure messages."""
        return self.output()[-6000:]

    def logged(self, event: str) -> list[dict[str, Any]]:
        """This run's JSON log lines for `event`."""
        lines = []
        for line in self.output().splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                record = json.loads(line)
                if record.get("event") == event:
                    lines.append(record)
        return lines

    def _spawn(self, settings: dict[str, str]) -> subprocess.Popen[bytes]:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [str(PAYMESH), "up", "--demo", "--port", str(self.port)],
                cwd=self.directory,  # no .env file here
                env=self.environment | settings,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        return self.process

    def start(self, **settings: str) -> None:
        """Start the platform (with extra PAYMESH_ settings) and wait for /health."""
        process = self._spawn(settings)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            code = process.poll()
            assert code is None, f"paymesh up exited early ({code}):\n{self.tail()}"
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"/health did not answer within {START_TIMEOUT_SECONDS} s:\n{self.tail()}")

    def run_until_killed(self, step: str) -> None:
        """Start the platform with the fault injection at `step` and wait until it kills
        itself there on its own (in the recovery job: no request of ours is running)."""
        process = self._spawn({"PAYMESH_PAYMENTS_CRASH_AT": step})
        try:
            code = process.wait(timeout=START_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"not killed at {step} within {START_TIMEOUT_SECONDS} s:\n{self.tail()}")
        self.assert_killed_at(step, code)

    def wait_until_killed(self, step: str, *, event: str = "payments_crash_injected") -> None:
        """The running platform dies at `step` (SIGKILL, by the fault injection that logs
        `event`)."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_TIMEOUT_SECONDS} s later:\n{self.tail()}")
        self.assert_killed_at(step, code, event=event)

    def assert_killed_at(
        self, step: str, code: int, *, event: str = "payments_crash_injected"
    ) -> None:
        assert code == -signal.SIGKILL, f"exit code {code}:\n{self.tail()}"
        injected = [line["step"] for line in self.logged(event)]
        assert injected == [step], self.tail()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end in time; always reaped."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


class Api:
    """What a customer and an operator ask the running platform."""

    def __init__(self, server: PaymeshUp) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, timeout=15)
        tokens = DevelopmentTokens(server.signing_secret, "paymesh", "paymesh")
        self.finance = {"authorization": f"Bearer {tokens.issue('finance-1', roles=['finance'])}"}
        self._signed_in: dict[tuple[int, str], dict[str, str]] = {}

    def close(self) -> None:
        self.http.close()

    def sign_in(self, username: str) -> dict[str, str]:
        """The demo user's Authorization header: identity's token (password grant), once
        per run of the platform."""
        signed_in = self._signed_in.get((self.server.runs, username))
        if signed_in is not None:
            return signed_in
        response = self.http.post(
            "/oauth2/token",
            data={"grant_type": "password", "username": username, "password": DEMO_PASSWORD},
            auth=LEGACY,
        )
        assert response.status_code == 200, response.text
        signed_in = {"authorization": f"Bearer {response.json()['access_token']}"}
        self._signed_in[self.server.runs, username] = signed_in
        return signed_in

    def usd_wallet(self, headers: dict[str, str]) -> dict[str, Any]:
        def seeded() -> dict[str, Any] | None:
            response = self.http.get("/v1/wallets", headers=headers)
            assert response.status_code == 200, response.text
            usd = [item for item in response.json()["data"] if item["currency"] == "USD"]
            return usd[0] if usd and usd[0]["balance"]["posted"] > 0 else None

        return eventually(seeded, 20, "the demo wallet (USD, funded)")

    def trial_balance(self) -> dict[str, dict[str, Any]]:
        response = self.http.get("/v1/ledger/trial-balance", headers=self.finance)
        assert response.status_code == 200, response.text
        document = response.json()
        for line in document["currencies"]:
            assert line["debits_posted"] == line["credits_posted"], document
            assert line["debits_pending"] == line["credits_pending"], document
        assert document["balanced"] is True, document
        return {line["currency"]: line for line in document["currencies"]}

    def pay(self, headers: dict[str, str], key: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(
            "/v1/payments", json=body, headers=headers | {"idempotency-key": key}, timeout=30
        )

    def payments(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        response = self.http.get("/v1/payments", headers=headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def timeline(self, headers: dict[str, str], payment_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/v1/payments/{payment_id}/timeline", headers=headers)
        assert response.status_code == 200, response.text
        steps: list[dict[str, Any]] = response.json()["steps"]
        return steps

    def notifications(self, headers: dict[str, str], event_type: str) -> list[dict[str, Any]]:
        response = self.http.get("/v1/notifications", params={"limit": 200}, headers=headers)
        assert response.status_code == 200, response.text
        return [item for item in response.json()["items"] if item["event_type"] == event_type]

    def notified_once(self, headers: dict[str, str], event_type: str) -> list[dict[str, Any]]:
        """The user's messages for `event_type` once they arrived and a while passed with
        nothing more (a duplicate would come through the same relay, within ~20 turns)."""
        eventually(
            lambda: self.notifications(headers, event_type) or None, 15, f"a {event_type} message"
        )
        time.sleep(1.0)
        messages = self.notifications(headers, event_type)
        per_channel = Counter(message["channel"] for message in messages)
        assert all(count == 1 for count in per_channel.values()), messages
        assert len({message["event_id"] for message in messages}) == 1, messages
        return messages


@pytest.fixture
def server(tmp_path: Path, postgres_database: str | None) -> Iterator[PaymeshUp]:
    """The platform process for one test, on a database of its own (schemas dropped
    before and after on PostgreSQL); stopped at the end whatever happened."""
    drop_schemas(postgres_database)
    running = PaymeshUp(tmp_path, postgres_database)
    try:
        yield running
    finally:
        running.stop()
        drop_schemas(postgres_database)


@pytest.fixture
def api(server: PaymeshUp) -> Iterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        client.close()
