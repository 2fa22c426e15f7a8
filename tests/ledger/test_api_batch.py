"""Batches of transfers over HTTP: each alone, or all-or-nothing."""

from __future__ import annotations

from typing import Any

import httpx

from tests.ledger.factories import (
    DEBITS_LIMITED,
    assert_problem,
    assert_status,
    assert_trial_balanced,
    balance_of,
    balances,
    batch,
    create_account,
    currency_totals,
    fund,
    get_transfer,
    transfer_body,
    trial_balance,
    unique_id,
)


async def _wallet_and_sink(client: httpx.AsyncClient, funds: int) -> tuple[str, str]:
    wallet = (await create_account(client, flags=DEBITS_LIMITED))["id"]
    sink = (await create_account(client))["id"]
    if funds:
        await fund(client, wallet, funds)
    return wallet, sink


def _results(response: httpx.Response) -> list[dict[str, Any]]:
    body = assert_status(response, 200)
    results: list[dict[str, Any]] = body["results"]
    return results


class TestCreateBatch:
    async def test_non_atomic_each_transfer_stands_alone(self, ledger: httpx.AsyncClient) -> None:
        wallet, sink = await _wallet_and_sink(ledger, 100)
        items = [
            transfer_body(wallet, sink, 60),
            transfer_body(wallet, unique_id("acc"), 1),  # no such account
            transfer_body(wallet, sink, 50),  # only 40 left
            transfer_body(wallet, sink, 40),
            transfer_body(wallet, sink, 0),
        ]

        results = _results(await batch(ledger, items, atomic=False))

        assert results == [
            {"id": items[0]["id"], "status": "created", "code": None},
            {"id": items[1]["id"], "status": "failed", "code": "account_not_found"},
            {"id": items[2]["id"], "status": "failed", "code": "exceeds_credits"},
            {"id": items[3]["id"], "status": "created", "code": None},
            {"id": items[4]["id"], "status": "failed", "code": "amount_must_be_positive"},
        ]
        assert await balances(ledger, wallet) == balance_of(debits_posted=100, credits_posted=100)
        assert await balances(ledger, sink) == balance_of(credits_posted=100)
        assert_status(await get_transfer(ledger, items[0]["id"]), 200)
        assert_problem(await get_transfer(ledger, items[2]["id"]), 404, "transfer_not_found")

    async def test_non_atomic_later_transfers_see_earlier_ones(
        self, ledger: httpx.AsyncClient
    ) -> None:
        source = (await create_account(ledger))["id"]
        wallet, sink = await _wallet_and_sink(ledger, 0)
        items = [transfer_body(source, wallet, 30), transfer_body(wallet, sink, 30)]

        results = _results(await batch(ledger, items, atomic=False))

        assert [result["status"] for result in results] == ["created", "created"]
        assert await balances(ledger, wallet) == balance_of(debits_posted=30, credits_posted=30)

    async def test_replaying_a_batch_reports_existing_transfers(
        self, ledger: httpx.AsyncClient
    ) -> None:
        wallet, sink = await _wallet_and_sink(ledger, 100)
        items = [transfer_body(wallet, sink, 10), transfer_body(wallet, sink, 20)]
        assert_status(await batch(ledger, items, atomic=False), 200)
        changed = {**items[1], "amount": 21}

        results = _results(await batch(ledger, [items[0], changed], atomic=False))

        assert results == [
            {"id": items[0]["id"], "status": "exists", "code": None},
            {"id": items[1]["id"], "status": "failed", "code": "exists_with_different_fields"},
        ]
        assert await balances(ledger, sink) == balance_of(credits_posted=30)

    async def test_atomic_one_failure_applies_none(self, ledger: httpx.AsyncClient) -> None:
        wallet, sink = await _wallet_and_sink(ledger, 100)
        other = (await create_account(ledger, currency="EUR"))["id"]
        before = await trial_balance(ledger)
        items = [
            transfer_body(wallet, sink, 40),
            transfer_body(wallet, sink, 30, pending=True),
            transfer_body(wallet, sink, 31),  # 40 + 30 + 31 > 100
            transfer_body(wallet, other, 1),  # and a currency mismatch
            transfer_body(wallet, sink, 1),
        ]

        results = _results(await batch(ledger, items, atomic=True))

        assert [(result["status"], result["code"]) for result in results] == [
            ("failed", "linked_transfer_failed"),
            ("failed", "linked_transfer_failed"),
            ("failed", "exceeds_credits"),
            ("failed", "currency_mismatch"),
            ("failed", "linked_transfer_failed"),
        ]
        assert [result["id"] for result in results] == [item["id"] for item in items]
        for item in items:
            assert_problem(await get_transfer(ledger, item["id"]), 404, "transfer_not_found")
        assert await balances(ledger, wallet) == balance_of(credits_posted=100)
        assert await balances(ledger, sink) == balance_of()
        assert await trial_balance(ledger) == before

    async def test_atomic_all_succeed(self, ledger: httpx.AsyncClient) -> None:
        wallet, sink = await _wallet_and_sink(ledger, 100)
        items = [transfer_body(wallet, sink, 60), transfer_body(wallet, sink, 40, pending=True)]

        results = _results(await batch(ledger, items, atomic=True))

        assert [result["status"] for result in results] == ["created", "created"]
        assert await balances(ledger, wallet) == balance_of(
            debits_pending=40, debits_posted=60, credits_posted=100
        )
        await assert_trial_balanced(ledger)

    async def test_atomic_fx_conversion_with_a_fee_applies_whole(
        self, ledger: httpx.AsyncClient
    ) -> None:
        alice_usd = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        bob_eur = (await create_account(ledger, currency="EUR", flags=DEBITS_LIMITED))["id"]
        liquidity_usd = (await create_account(ledger, code=100))["id"]
        liquidity_eur = (await create_account(ledger, currency="EUR", flags=DEBITS_LIMITED))["id"]
        fees_usd = (await create_account(ledger, code=200))["id"]
        await fund(ledger, alice_usd, 10_250)
        await fund(ledger, liquidity_eur, 50_000, currency="EUR")
        before = await trial_balance(ledger)
        legs = [
            transfer_body(alice_usd, liquidity_usd, 10_000, metadata={"leg": "sell USD"}),
            transfer_body(liquidity_eur, bob_eur, 9_200, currency="EUR"),
            transfer_body(alice_usd, fees_usd, 250, metadata={"leg": "fee"}),
            transfer_body(bob_eur, liquidity_eur, 92, currency="EUR"),  # receiving fee
        ]

        results = _results(await batch(ledger, legs, atomic=True))

        assert [result["status"] for result in results] == ["created"] * 4
        assert await balances(ledger, alice_usd) == balance_of(
            debits_posted=10_250, credits_posted=10_250
        )
        assert await balances(ledger, liquidity_usd) == balance_of(credits_posted=10_000)
        assert await balances(ledger, fees_usd) == balance_of(credits_posted=250)
        assert await balances(ledger, bob_eur) == balance_of(debits_posted=92, credits_posted=9_200)
        assert await balances(ledger, liquidity_eur) == balance_of(
            debits_posted=9_200, credits_posted=50_092
        )
        after = await assert_trial_balanced(ledger)
        for currency, moved in (("USD", 10_250), ("EUR", 9_292)):
            grew = currency_totals(after, currency)["debits_posted"]
            assert grew - currency_totals(before, currency)["debits_posted"] == moved

    async def test_atomic_fx_conversion_fails_whole_when_the_fee_is_not_covered(
        self, ledger: httpx.AsyncClient
    ) -> None:
        alice_usd = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        bob_eur = (await create_account(ledger, currency="EUR"))["id"]
        liquidity_usd = (await create_account(ledger))["id"]
        liquidity_eur = (await create_account(ledger, currency="EUR", flags=DEBITS_LIMITED))["id"]
        fees_usd = (await create_account(ledger))["id"]
        await fund(ledger, alice_usd, 10_000)
        await fund(ledger, liquidity_eur, 50_000, currency="EUR")
        legs = [
            transfer_body(alice_usd, liquidity_usd, 10_000),
            transfer_body(liquidity_eur, bob_eur, 9_200, currency="EUR"),
            transfer_body(alice_usd, fees_usd, 250),
            transfer_body(bob_eur, liquidity_eur, 92, currency="EUR"),
        ]

        results = _results(await batch(ledger, legs, atomic=True))

        assert [result["code"] for result in results] == [
            "linked_transfer_failed",
            "linked_transfer_failed",
            "exceeds_credits",
            "linked_transfer_failed",
        ]
        assert await balances(ledger, alice_usd) == balance_of(credits_posted=10_000)
        assert await balances(ledger, bob_eur) == balance_of()
        assert await balances(ledger, liquidity_eur) == balance_of(credits_posted=50_000)

    async def test_largest_batch_is_accepted(self, ledger: httpx.AsyncClient) -> None:
        source = (await create_account(ledger))["id"]
        sink = (await create_account(ledger))["id"]
        items = [transfer_body(source, sink, 1) for _ in range(8000)]

        results = _results(await batch(ledger, items, atomic=True))

        assert len(results) == 8000
        assert all(result["status"] == "created" for result in results)
        assert await balances(ledger, sink) == balance_of(credits_posted=8000)

    async def test_more_than_8000_is_refused(self, ledger: httpx.AsyncClient) -> None:
        source = (await create_account(ledger))["id"]
        sink = (await create_account(ledger))["id"]
        items = [transfer_body(source, sink, 1) for _ in range(8001)]

        response = await batch(ledger, items, atomic=False)

        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] in ("validation_failed", "batch_too_large")
        assert await balances(ledger, sink) == balance_of()

    async def test_empty_batch_is_refused(self, ledger: httpx.AsyncClient) -> None:
        response = await batch(ledger, [], atomic=True)

        assert_problem(response, 422, "validation_failed")

    async def test_an_invalid_item_refuses_the_whole_request(
        self, ledger: httpx.AsyncClient
    ) -> None:
        source = (await create_account(ledger))["id"]
        sink = (await create_account(ledger))["id"]
        items = [transfer_body(source, sink, 1), transfer_body(source, sink, 1.5)]

        response = await batch(ledger, items, atomic=False)

        assert_problem(response, 422, "validation_failed")
        assert await balances(ledger, sink) == balance_of()
