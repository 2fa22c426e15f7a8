"""Payouts survive SIGKILL: the platform (`paymesh up --demo`, a real process) kills itself
between the ledger reservation and the submission to the bank (`payout_reserved`), or
between the submission and the bank's status (`payout_submitted`). The partner bank is the
simulator in a process of its own (`paymesh serve bank-simulator`), so it remembers what it
received across the platform's deaths. Started again on the same database, the recovery
job finishes each payout exactly once: settled (posted) or rejected (voided), never both,
never lost, and the bank holds one instruction for it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.payments.crash_support import (
    PAYMESH,
    Api,
    PaymeshUp,
    api,
    eventually,
    free_port,
    server,
)

__all__ = ["api", "server"]  # fixtures

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

AMOUNT = 2_500
ENDED = ("succeeded", "failed")
# Account numbers (US: account number + routing number) whose last four digits script the
# simulator: 0004 settles after a delay, 0001 rejects (AC01).
SETTLES_LATER, REJECTS = "000123450004", "000123450001"


class Bank:
    """The partner-bank simulator as its own process, calling the platform back."""

    def __init__(self, directory: Path, platform_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        callback = (
            f"http://127.0.0.1:{platform_port}/v1/providers/banks/paymesh-partner-bank/status"
        )
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("PAYMESH_")
        }
        environment |= {
            "PAYMESH_DATA_DIR": str(directory / "bank"),
            "PAYMESH_PROVIDERS_BANK_SIMULATOR": json.dumps(
                {"callback_url": callback, "settle_delay_seconds": 2}
            ),
        }
        self.log = (directory / "bank.log").open("wb")
        self.process = subprocess.Popen(
            [str(PAYMESH), "serve", "bank-simulator", "--port", str(self.port)],
            cwd=directory,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, "the bank simulator exited"
            assert time.monotonic() < deadline, "the bank simulator did not start"
            time.sleep(0.2)

    def instructions(self, end_to_end_id: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/_admin/instructions", timeout=5)
        assert response.status_code == 200, response.text
        return [
            item
            for item in response.json()["instructions"]
            if item["end_to_end_id"] == end_to_end_id
        ]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        self.log.close()


@pytest.fixture
def bank(tmp_path: Path, server: PaymeshUp) -> Iterator[Bank]:
    """The bank simulator, and the platform configured to pay out through it (polled each
    second: a status the platform missed while it was down is found that way)."""
    simulator = Bank(tmp_path, server.port)
    banks = [{"base_url": simulator.url, "poll_interval_seconds": 1, "status_timeout_seconds": 120}]
    server.environment["PAYMESH_PROVIDERS_BANKS"] = json.dumps(banks)
    try:
        yield simulator
    finally:
        simulator.stop()


def payout_body(api: Api, account: str) -> dict[str, Any]:
    alice = api.sign_in("alice")
    return {
        "type": "payout",
        "source_wallet_id": api.usd_wallet(alice)["id"],
        "amount": AMOUNT,
        "currency": "USD",
        "beneficiary": {
            "name": "Ava Johnson",
            "account_number": account,
            "bank_code": "026009593",
            "country": "US",
        },
        "remittance_info": "crash test",
    }


@pytest.mark.parametrize(
    ("crash_at", "account", "outcome"),
    [
        # Killed before the bank heard of it; after the restart it rejects: voided once.
        ("payout_reserved", REJECTS, "failed"),
        # Killed after the bank took it; it settles while the platform is down (its
        # callbacks fail): polling after the restart finds the settlement, posted once.
        ("payout_submitted", SETTLES_LATER, "succeeded"),
    ],
)
def test_a_payout_killed_midway_ends_once(
    crash_at: str, account: str, outcome: str, server: PaymeshUp, bank: Bank, api: Api
) -> None:
    server.start(PAYMESH_PAYMENTS_CRASH_AT=crash_at)
    body = payout_body(api, account)
    before = api.usd_wallet(api.sign_in("alice"))["balance"]
    ledger_before = api.trial_balance()
    with pytest.raises(httpx.TransportError):
        api.pay(api.sign_in("alice"), f"payout-{crash_at}", body)  # dies before it answers
    server.wait_until_killed(crash_at)

    server.start()  # the same database, no fault injection

    alice = api.sign_in("alice")

    def ended() -> dict[str, Any] | None:
        items = api.payments(alice)
        assert len(items) == 1, items
        return items[0] if items[0]["status"] in ENDED else None

    payment = eventually(ended, 45, "the killed payout to end")
    assert payment["status"] == outcome, payment
    after = api.usd_wallet(alice)["balance"]
    change = AMOUNT + payment["fee"] if outcome == "succeeded" else 0
    assert after == {
        "available": before["available"] - change,
        "pending": before["pending"],
        "posted": before["posted"] - change,
    }
    ledger_after = api.trial_balance()
    # Posted: the reservation (amount + fee), then the fee from clearing to fees. Voided:
    # nothing posted, and nothing left pending either way.
    posted = ledger_after["USD"]["debits_posted"] - ledger_before["USD"]["debits_posted"]
    assert posted == (AMOUNT + 2 * payment["fee"] if outcome == "succeeded" else 0)
    assert ledger_after["USD"]["debits_pending"] == ledger_before["USD"]["debits_pending"]
    # The bank holds exactly one instruction for it, however often it was sent.
    end_to_end_id = payment["payout"]["instruction"]["end_to_end_id"]
    held = bank.instructions(end_to_end_id)
    assert len(held) == 1, held
    assert held[0]["status"] == ("ACSC" if outcome == "succeeded" else "RJCT"), held
    steps = [
        f"{step['step']}:{step['outcome']}"
        for step in api.timeline(alice, payment["id"])
        if step["step"] != "notification"  # the messages' outcomes come in any order
    ]
    assert steps.count("ledger:reserved") == 1, steps
    assert steps[-1] == ("ledger:posted" if outcome == "succeeded" else "ledger:voided"), steps
    # A replay answers the same payout; nothing moves again.
    replay = api.pay(alice, f"payout-{crash_at}", body)
    assert replay.status_code == 201, replay.text
    assert (replay.json()["id"], replay.json()["status"]) == (payment["id"], outcome)
    assert api.usd_wallet(alice)["balance"] == after
