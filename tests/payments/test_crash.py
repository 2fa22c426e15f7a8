"""Payments survive SIGKILL at every step: the platform (`paymesh up --demo`, a real
process) kills itself at a step of a P2P payment; started again on the same database, the
recovery job finishes the payment exactly once — the money moves once or not at all, the
ledger balances, a replayed request answers the same payment, and the payer is told once.

Every crash point (`created`, `risk_decided`, `ledger_attempted`, `ledger_posted`) comes
after the payment's row was committed, so there is always a payment to resume. One case
also kills the recovery job itself, after it posted the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.payments.crash_support import Api, PaymeshUp, api, eventually, server

__all__ = ["api", "server"]  # fixtures

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

AMOUNT = 1_234
ENDED = ("succeeded", "failed")
RECOVERY_WAIT_SECONDS = 30


def balances(api: Api) -> dict[str, dict[str, int]]:
    """alice's and bob's USD wallet balances (signing in afresh after every restart)."""
    return {name: api.usd_wallet(api.sign_in(name))["balance"] for name in ("alice", "bob")}


def moved(before: dict[str, int], change: int) -> dict[str, int]:
    return {
        "available": before["available"] + change,
        "pending": before["pending"],
        "posted": before["posted"] + change,
    }


@dataclass
class KilledPayment:
    """alice pays bob; the platform dies on the way. What was there before, to compare."""

    api: Api
    key: str
    body: dict[str, Any]
    before: dict[str, dict[str, int]]
    ledger_before: dict[str, dict[str, Any]]

    @classmethod
    def send(cls, api: Api, server: PaymeshUp, crash_at: str) -> KilledPayment:
        alice, bob = api.sign_in("alice"), api.sign_in("bob")
        body: dict[str, Any] = {
            "type": "p2p",
            "source_wallet_id": api.usd_wallet(alice)["id"],
            "destination": {"wallet_id": api.usd_wallet(bob)["id"]},
            "amount": AMOUNT,
            "currency": "USD",
            "description": f"killed at {crash_at}",
        }
        killed = cls(api, f"crash-{crash_at}", body, balances(api), api.trial_balance())
        with pytest.raises(httpx.TransportError):
            api.pay(alice, killed.key, body)  # the process dies before it answers
        server.wait_until_killed(crash_at)
        return killed

    def ended(self) -> dict[str, Any]:
        """The payment, once the recovery job brought it to an end."""
        alice = self.api.sign_in("alice")

        def probe() -> dict[str, Any] | None:
            items = self.api.payments(alice)
            assert len(items) == 1, items  # committed before every crash point, once
            return items[0] if items[0]["status"] in ENDED else None

        payment = eventually(probe, RECOVERY_WAIT_SECONDS, "the killed payment to end")
        # The recovery job finished it: nobody else asked (a replay does not move it on).
        steps = [
            step
            for step in self.api.timeline(alice, payment["id"])
            if step["step"] != "notification"  # the messages' outcomes come later
        ]
        assert steps[-1]["actor"] == "recovery", steps
        return payment

    def assert_moved_once(self, payment: dict[str, Any]) -> None:
        """The money moved exactly once (succeeded) or not at all (failed), the ledger
        balances, a replay answers the same payment, and each party was told once."""
        after, ledger_after = balances(self.api), self.api.trial_balance()
        if payment["status"] == "succeeded":
            change = payment["amount"] + payment["fee"]
            assert payment["amount"] == AMOUNT and payment["fee"] > 0, payment
            assert after["alice"] == moved(self.before["alice"], -change)
            assert after["bob"] == moved(self.before["bob"], AMOUNT)
        else:
            assert payment["failure"] and payment["failure"]["reason"], payment
            assert after == self.before
            change = 0
        posted_before = self.ledger_before["USD"]["debits_posted"]
        assert ledger_after["USD"]["debits_posted"] == posted_before + change
        others = {currency for currency in self.ledger_before if currency != "USD"}
        assert {c: ledger_after[c] for c in others} == {c: self.ledger_before[c] for c in others}

        alice = self.api.sign_in("alice")
        replay = self.api.pay(alice, self.key, self.body)
        assert replay.status_code == 201, replay.text
        assert (replay.json()["id"], replay.json()["status"]) == (payment["id"], payment["status"])
        reused = self.api.pay(alice, self.key, self.body | {"amount": AMOUNT + 1})
        assert reused.status_code == 422, reused.text
        assert reused.json()["code"] == "idempotency_key_reused"
        assert len(self.api.payments(alice)) == 1

        if payment["status"] == "succeeded":
            self.api.notified_once(alice, "payments.payment.succeeded")
            self.api.notified_once(self.api.sign_in("bob"), "payments.payment.received")
        else:
            self.api.notified_once(alice, "payments.payment.failed")
            assert self.api.notifications(alice, "payments.payment.succeeded") == []
        assert balances(self.api) == after
        assert self.api.trial_balance() == ledger_after


class TestPaymentKilledMidway:
    @pytest.mark.parametrize(
        ("crash_at", "recovery_crash_at"),
        [
            # Killed right after the row: the next start's recovery job resumes it, posts
            # the batch and is killed too, holding the job's lease. The start after that
            # must still finish it within seconds (not when the dead holder's lease ends).
            ("created", "ledger_posted"),
            ("risk_decided", None),
            ("ledger_attempted", None),
            ("ledger_posted", None),
        ],
    )
    def test_the_restarted_platform_finishes_it_once(
        self, crash_at: str, recovery_crash_at: str | None, server: PaymeshUp, api: Api
    ) -> None:
        server.start(PAYMESH_PAYMENTS_CRASH_AT=crash_at)
        killed = KilledPayment.send(api, server, crash_at)
        if recovery_crash_at is not None:
            server.run_until_killed(recovery_crash_at)

        server.start()  # the same database, no fault injection

        payment = killed.ended()
        if "ledger_posted" in (crash_at, recovery_crash_at):
            assert payment["status"] == "succeeded", payment  # the ledger had posted it
        killed.assert_moved_once(payment)
