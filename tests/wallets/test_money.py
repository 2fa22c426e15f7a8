"""Deposits, withdrawals, holds, freezing, closing and statements, through the gateway."""

from __future__ import annotations

import asyncio

import pytest

from tests.wallets.conftest import World, key

pytestmark = pytest.mark.serial


async def funded(world: World, username: str, amount: int) -> tuple[dict[str, str], str]:
    headers = await world.customer(username)
    wallet = await world.open(headers)
    response = await world.deposit(wallet["id"], amount)
    assert response.status_code == 201, response.text
    return headers, wallet["id"]


def movement(amount: int, reference: str = "ref-1") -> dict[str, object]:
    return {"amount": amount, "reference": reference}


class TestDepositsAndWithdrawals:
    async def test_balances_and_events(self, world: World) -> None:
        _, wallet_id = await funded(world, "carol", 10_000)
        finance = world.staff("finance")
        withdrawal = await world.client.post(
            f"/v1/wallets/{wallet_id}/withdrawals", json=movement(2_500), headers=finance | key()
        )
        assert withdrawal.status_code == 201, withdrawal.text
        assert withdrawal.json()["status"] == "completed"
        assert await world.balance(wallet_id) == {"available": 7_500, "pending": 0, "posted": 7_500}
        deposits = await world.events("wallets.deposit.completed")
        withdrawals = await world.events("wallets.withdrawal.completed")
        assert [item["amount"] for item in deposits] == [10_000]
        assert [item["amount"] for item in withdrawals] == [2_500]

    async def test_insufficient_funds_changes_nothing(self, world: World) -> None:
        _, wallet_id = await funded(world, "carol", 1_000)
        response = await world.client.post(
            f"/v1/wallets/{wallet_id}/withdrawals",
            json=movement(1_001),
            headers=world.staff("finance") | key(),
        )
        assert response.status_code == 409
        assert response.json()["code"] == "insufficient_funds"
        assert await world.balance(wallet_id) == {"available": 1_000, "pending": 0, "posted": 1_000}
        assert await world.events("wallets.withdrawal.completed") == []

    async def test_idempotent_replay_and_reused_key(self, world: World) -> None:
        _, wallet_id = await funded(world, "carol", 100)
        headers = world.staff("finance") | key()
        path = f"/v1/wallets/{wallet_id}/deposits"
        first = await world.client.post(path, json=movement(500), headers=headers)
        second = await world.client.post(path, json=movement(500), headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()
        reused = await world.client.post(path, json=movement(501), headers=headers)
        assert reused.status_code == 422
        assert reused.json()["code"] == "idempotency_key_reused"
        assert (await world.balance(wallet_id))["posted"] == 600
        missing = await world.client.post(path, json=movement(5), headers=world.staff("finance"))
        assert missing.status_code == 400


class TestHolds:
    async def test_hold_partial_capture_and_release(self, world: World) -> None:
        carol, wallet_id = await funded(world, "carol", 10_000)
        hold = await world.hold(carol, wallet_id, 4_000)
        assert hold.status_code == 201, hold.text
        assert hold.json()["status"] == "active"
        assert await world.balance(wallet_id) == {
            "available": 6_000,
            "pending": 4_000,
            "posted": 10_000,
        }
        base = f"/v1/wallets/{wallet_id}/holds/{hold.json()['id']}"
        too_much = await world.client.post(
            f"{base}/capture", json={"amount": 4_001}, headers=carol | key()
        )
        assert too_much.status_code == 422
        assert too_much.json()["code"] == "exceeds_hold_amount"
        capture = await world.client.post(
            f"{base}/capture", json={"amount": 1_500}, headers=carol | key()
        )
        assert capture.status_code == 200, capture.text
        assert capture.json()["status"] == "captured"
        assert capture.json()["captured_amount"] == 1_500
        assert await world.balance(wallet_id) == {
            "available": 8_500,
            "pending": 0,
            "posted": 8_500,
        }
        again = await world.client.post(f"{base}/release", headers=carol | key())
        assert again.status_code == 409
        assert again.json()["code"] == "hold_not_active"

        second = await world.hold(carol, wallet_id, 8_500)
        released = await world.client.post(
            f"/v1/wallets/{wallet_id}/holds/{second.json()['id']}/release", headers=carol | key()
        )
        assert released.json()["status"] == "released"
        assert (await world.balance(wallet_id))["available"] == 8_500
        for kind in ("created", "captured", "released"):
            assert await world.events(f"wallets.hold.{kind}"), kind

    async def test_hold_beyond_available_is_refused(self, world: World) -> None:
        carol, wallet_id = await funded(world, "carol", 1_000)
        assert (await world.hold(carol, wallet_id, 600)).status_code == 201
        refused = await world.hold(carol, wallet_id, 401)
        assert refused.status_code == 409
        assert refused.json()["code"] == "insufficient_funds"
        assert await world.balance(wallet_id) == {"available": 400, "pending": 600, "posted": 1_000}
        for body in (
            {"amount": 1, "expires_in_seconds": 0},
            {"amount": 1, "expires_in_seconds": "60"},
            {"amount": 1, "expires_in_seconds": 8 * 86_400},  # beyond max_hold_seconds
            {"amount": 1.5, "expires_in_seconds": 9},
        ):
            bad = await world.client.post(
                f"/v1/wallets/{wallet_id}/holds", json=body, headers=carol | key()
            )
            assert bad.status_code == 422

    async def test_expired_hold_releases_itself(self, world: World) -> None:
        carol, wallet_id = await funded(world, "carol", 1_000)
        hold = await world.hold(carol, wallet_id, 700, seconds=1)
        assert (await world.balance(wallet_id))["available"] == 300
        path = f"/v1/wallets/{wallet_id}/holds/{hold.json()['id']}"
        for _ in range(150):
            current = await world.client.get(path, headers=carol)
            if current.json()["status"] == "expired":
                break
            await asyncio.sleep(0.1)
        assert current.json()["status"] == "expired"
        assert await world.balance(wallet_id) == {"available": 1_000, "pending": 0, "posted": 1_000}
        assert [event["id"] for event in await world.events("wallets.hold.expired")] == [
            hold.json()["id"]
        ]
        late = await world.client.post(f"{path}/capture", headers=carol | key())
        assert late.status_code == 409
        assert late.json()["code"] == "hold_expired"

    async def test_simultaneous_holds_never_reserve_more_than_the_balance(
        self, world: World
    ) -> None:
        carol, wallet_id = await funded(world, "carol", 10_000)
        results = await asyncio.gather(*(world.hold(carol, wallet_id, 1_000) for _ in range(30)))
        statuses = sorted(response.status_code for response in results)
        assert statuses == [201] * 10 + [409] * 20, statuses
        assert await world.balance(wallet_id) == {
            "available": 0,
            "pending": 10_000,
            "posted": 10_000,
        }


class TestFreezeAndClose:
    async def test_frozen_wallet_takes_credits_only(self, world: World) -> None:
        carol, wallet_id = await funded(world, "carol", 1_000)
        ops = world.staff("ops")
        base = f"/v1/wallets/{wallet_id}"
        assert (await world.client.post(f"{base}/freeze", headers=ops)).json()["status"] == "frozen"
        hold = await world.hold(carol, wallet_id, 100)
        assert hold.status_code == 409
        assert hold.json()["code"] == "wallet_frozen"
        withdrawal = await world.client.post(
            f"{base}/withdrawals", json=movement(100), headers=world.staff("finance") | key()
        )
        assert withdrawal.json()["code"] == "wallet_frozen"
        assert (await world.deposit(wallet_id, 500)).status_code == 201
        assert (await world.client.post(f"{base}/unfreeze", headers=ops)).status_code == 200
        assert (await world.hold(carol, wallet_id, 100)).status_code == 201
        assert await world.events("wallets.wallet.frozen")
        assert await world.events("wallets.wallet.unfrozen")

    async def test_close_needs_zero_balance_and_no_hold(self, world: World) -> None:
        carol, wallet_id = await funded(world, "carol", 1_000)
        base = f"/v1/wallets/{wallet_id}"
        refused = await world.client.post(f"{base}/close", headers=carol)
        assert refused.status_code == 409
        assert refused.json()["code"] == "balance_not_zero"
        await world.client.post(
            f"{base}/withdrawals", json=movement(1_000), headers=world.staff("finance") | key()
        )
        closed = await world.client.post(f"{base}/close", headers=carol)
        assert closed.status_code == 200, closed.text
        assert closed.json()["status"] == "closed"
        assert (await world.deposit(wallet_id, 1)).json()["code"] == "wallet_not_active"
        assert await world.events("wallets.wallet.closed")
        reopened = await world.open(carol)  # a closed wallet frees its currency
        assert reopened["id"] != wallet_id


class TestStatement:
    async def test_running_balance(self, world: World) -> None:
        carol, wallet_id = await funded(world, "carol", 5_000)
        hold = await world.hold(carol, wallet_id, 2_000)
        await world.client.post(
            f"/v1/wallets/{wallet_id}/holds/{hold.json()['id']}/capture",
            json={"amount": 500},
            headers=carol | key(),
        )
        await world.deposit(wallet_id, 300)
        path = f"/v1/wallets/{wallet_id}/transactions"
        page = await world.client.get(path, params={"limit": 2}, headers=carol)
        assert page.status_code == 200, page.text
        lines = page.json()["data"]
        rest = await world.client.get(
            path, params={"cursor": page.json()["next_cursor"]}, headers=carol
        )
        lines += rest.json()["data"]
        assert [(line["kind"], line["balance"], line["available"]) for line in lines] == [
            ("posted", 5_000, 5_000),
            ("pending", 5_000, 3_000),
            ("post", 4_500, 4_500),
            ("posted", 4_800, 4_800),
        ]
        forged = await world.client.get(path, params={"cursor": "bm90LWEtY3Vyc29y"}, headers=carol)
        assert forged.status_code == 422
