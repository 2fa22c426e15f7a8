"""A crash between the two databases: the ledger moved the money, the wallet never heard
back. A retry with the same key, or the recovery job, finishes the operation once."""

from __future__ import annotations

import asyncio
from typing import Any

from paymesh.kernel.errors import ServiceUnavailable
from paymesh.ledger.schemas import Transfer, TransferCreate
from tests.wallets.conftest import World, key


class LostAnswers:
    """The real ledger client, but the answer to the next transfer is lost after the
    ledger committed it (a crash or a timeout on the way back)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.lose_next = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def create_transfer(self, transfer: TransferCreate) -> Transfer:
        result: Transfer = await self.real.create_transfer(transfer)
        if self.lose_next:
            self.lose_next = False
            raise ServiceUnavailable(detail="connection reset")
        return result


def lose_next_answer(world: World) -> LostAnswers:
    runtime = world.platform.runtimes["wallets"]
    flaky = LostAnswers(runtime.state["ledger_client"])
    runtime.state["operations"].postings.ledger = flaky
    return flaky


class TestRecovery:
    async def test_retry_with_the_same_key_posts_once(self, world: World) -> None:
        carol = await world.customer("carol")
        wallet = await world.open(carol)
        lose_next_answer(world)
        headers = world.staff("finance") | key()
        path = f"/v1/wallets/{wallet['id']}/deposits"
        body = {"amount": 4_200, "reference": "wire 1"}
        lost = await world.client.post(path, json=body, headers=headers)
        assert lost.status_code == 503
        # The ledger did move the money: the wallet's balance is the ledger's.
        assert (await world.balance(wallet["id"]))["posted"] == 4_200
        retried = await world.client.post(path, json=body, headers=headers)
        assert retried.status_code == 201, retried.text
        assert retried.json()["status"] == "completed"
        assert (await world.balance(wallet["id"]))["posted"] == 4_200
        assert len(await world.events("wallets.deposit.completed")) == 1

    async def test_the_recovery_job_finishes_what_nobody_retried(self, world: World) -> None:
        runtime = world.platform.runtimes["wallets"]
        runtime.settings.wallets.recovery_after_seconds = 0.1
        carol = await world.customer("carol")
        wallet = await world.open(carol)
        await world.deposit(wallet["id"], 1_000)
        lose_next_answer(world)
        lost = await world.hold(carol, wallet["id"], 600)
        assert lost.status_code == 503
        assert (await world.balance(wallet["id"]))["pending"] == 600
        for _ in range(150):
            created = await world.events("wallets.hold.created")
            if created:
                break
            await asyncio.sleep(0.1)
        assert len(created) == 1 and created[0]["status"] == "active"
        assert await world.balance(wallet["id"]) == {
            "available": 400,
            "pending": 600,
            "posted": 1_000,
        }


class Unreachable:
    """The real ledger client, but the next transfer never reaches the ledger."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def create_transfer(self, transfer: TransferCreate) -> Transfer:
        raise ServiceUnavailable(detail="connection refused")


class TestClosingWhileMoneyMoves:
    async def test_a_wallet_with_a_movement_in_progress_does_not_close(self, world: World) -> None:
        # A deposit recorded but not yet posted: closing now would let the recovery job
        # (or the retry) credit a closed wallet.
        carol = await world.customer("carol")
        wallet = await world.open(carol)
        operations = world.platform.runtimes["wallets"].state["operations"]
        real = operations.postings.ledger
        operations.postings.ledger = Unreachable(real)
        headers = world.staff("finance") | key()
        path = f"/v1/wallets/{wallet['id']}/deposits"
        body = {"amount": 4_200, "reference": "wire 2"}
        stuck = await world.client.post(path, json=body, headers=headers)
        assert stuck.status_code == 503
        assert (await world.balance(wallet["id"]))["posted"] == 0

        closing = await world.client.post(f"/v1/wallets/{wallet['id']}/close", headers=carol)

        assert closing.status_code == 409, closing.text
        assert closing.json()["code"] == "balance_not_zero"
        assert "in progress" in closing.json()["detail"]
        operations.postings.ledger = real
        retried = await world.client.post(path, json=body, headers=headers)
        assert retried.status_code == 201, retried.text
        shown = await world.client.get(f"/v1/wallets/{wallet['id']}", headers=carol)
        assert shown.json()["status"] == "active"
        assert shown.json()["balance"]["posted"] == 4_200

    async def test_a_movement_after_the_close_finds_the_wallet_closed(self, world: World) -> None:
        carol = await world.customer("carol")
        wallet = await world.open(carol)
        closing = await world.client.post(f"/v1/wallets/{wallet['id']}/close", headers=carol)
        assert closing.status_code == 200, closing.text

        late = await world.client.post(
            f"/v1/wallets/{wallet['id']}/deposits",
            json={"amount": 100, "reference": "late"},
            headers=world.staff("finance") | key(),
        )

        assert late.status_code == 409, late.text
        assert late.json()["code"] == "wallet_not_active"
        assert (await world.balance(wallet["id"]))["posted"] == 0
