"""Single transfers over HTTP: create, replay, refusals, read, list."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from paymesh.kernel.money import MAX_AMOUNT_MINOR
from tests.ledger.factories import (
    CREDITS_LIMITED,
    DEBITS_LIMITED,
    assert_problem,
    assert_status,
    assert_trial_balanced,
    balance_of,
    balances,
    collect_pages,
    create_account,
    currency_totals,
    fund,
    get_transfer,
    post_pending,
    post_transfer,
    transfer,
    transfer_body,
    unique_id,
    void_pending,
)


async def _pair(client: httpx.AsyncClient, currency: str = "USD") -> tuple[str, str]:
    debit = await create_account(client, currency=currency)
    credit = await create_account(client, currency=currency)
    return debit["id"], credit["id"]


class TestCreateTransfer:
    async def test_created(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger)
        body = transfer_body(debit, credit, 1234, code=9, metadata={"order": "o-1"})

        response = await post_transfer(ledger, body)

        created = assert_status(response, 201)
        assert {key: created[key] for key in body} == body
        assert created["status"] == "posted"
        assert created["posted_amount"] == 1234
        assert created["pending"] is False
        assert created["expires_at"] is None
        assert created["resolved_at"] is not None
        assert await balances(ledger, debit) == balance_of(debits_posted=1234)
        assert await balances(ledger, credit) == balance_of(credits_posted=1234)
        assert assert_status(await get_transfer(ledger, body["id"]), 200) == created

    async def test_same_id_and_fields_returns_the_original_without_a_second_effect(
        self, ledger: httpx.AsyncClient
    ) -> None:
        debit, credit = await _pair(ledger)
        body = transfer_body(debit, credit, 500, metadata={"n": 1})
        original = assert_status(await post_transfer(ledger, body), 201)

        again = await post_transfer(ledger, body)

        assert assert_status(again, 200) == original
        assert await balances(ledger, debit) == balance_of(debits_posted=500)
        assert await balances(ledger, credit) == balance_of(credits_posted=500)

    @pytest.mark.parametrize(
        "change",
        [{"amount": 501}, {"code": 1}, {"metadata": {"n": 2}}, {"pending": True}],
        ids=["amount", "code", "metadata", "pending"],
    )
    async def test_same_id_with_different_fields_is_a_conflict(
        self, ledger: httpx.AsyncClient, change: dict[str, Any]
    ) -> None:
        debit, credit = await _pair(ledger)
        body = transfer_body(debit, credit, 500, metadata={"n": 1})
        original = assert_status(await post_transfer(ledger, body), 201)

        response = await post_transfer(ledger, {**body, **change})

        assert_problem(response, 409, "exists_with_different_fields")
        assert assert_status(await get_transfer(ledger, body["id"]), 200) == original
        assert await balances(ledger, debit) == balance_of(debits_posted=500)

    async def test_same_id_with_swapped_accounts_is_a_conflict(
        self, ledger: httpx.AsyncClient
    ) -> None:
        debit, credit = await _pair(ledger)
        body = transfer_body(debit, credit, 500)
        assert_status(await post_transfer(ledger, body), 201)

        response = await post_transfer(
            ledger, {**body, "debit_account_id": credit, "credit_account_id": debit}
        )

        assert_problem(response, 409, "exists_with_different_fields")
        assert await balances(ledger, credit) == balance_of(credits_posted=500)

    async def test_accounts_must_be_different(self, ledger: httpx.AsyncClient) -> None:
        account = (await create_account(ledger))["id"]

        response = await post_transfer(ledger, transfer_body(account, account, 100))

        assert_problem(response, 422, "accounts_must_be_different")
        assert await balances(ledger, account) == balance_of()

    async def test_currency_differs_from_the_accounts(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger, "USD")

        response = await post_transfer(ledger, transfer_body(debit, credit, 100, currency="EUR"))

        assert_problem(response, 422, "currency_mismatch")
        assert await balances(ledger, debit) == balance_of()

    async def test_accounts_in_different_currencies(self, ledger: httpx.AsyncClient) -> None:
        debit = (await create_account(ledger, currency="USD"))["id"]
        credit = (await create_account(ledger, currency="EUR"))["id"]

        response = await post_transfer(ledger, transfer_body(debit, credit, 100, currency="USD"))

        assert_problem(response, 422, "currency_mismatch")
        assert await balances(ledger, debit) == balance_of()
        assert await balances(ledger, credit) == balance_of()

    async def test_amount_must_be_positive(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger)
        for amount in (0, -1, -(2**63)):
            body = transfer_body(debit, credit, amount)

            response = await post_transfer(ledger, body)

            assert_problem(response, 422, "amount_must_be_positive")
            assert_problem(await get_transfer(ledger, body["id"]), 404, "transfer_not_found")
        assert await balances(ledger, debit) == balance_of()

    async def test_amount_must_be_an_integer(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger)
        for amount in (100.0, 1.5, "100", None, True, [100], {"value": 100}):
            response = await post_transfer(ledger, transfer_body(debit, credit, amount))

            assert_problem(response, 422, "validation_failed")
        assert await balances(ledger, debit) == balance_of()

    async def test_amount_beyond_64_bits_is_refused(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger)
        for amount in (2**63, 2**64 + 1, 10**30):
            response = await post_transfer(ledger, transfer_body(debit, credit, amount))

            assert_problem(response, 422, "validation_failed")
        assert await balances(ledger, debit) == balance_of()

    async def test_largest_amount_is_accepted(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger)

        created = await transfer(ledger, debit, credit, MAX_AMOUNT_MINOR)

        assert created["amount"] == MAX_AMOUNT_MINOR
        assert await balances(ledger, credit) == balance_of(credits_posted=MAX_AMOUNT_MINOR)

    async def test_overflow_of_the_credit_balance(self, ledger: httpx.AsyncClient) -> None:
        first, credit = await _pair(ledger)
        second = (await create_account(ledger))["id"]
        await transfer(ledger, first, credit, MAX_AMOUNT_MINOR)

        response = await post_transfer(ledger, transfer_body(second, credit, 1))

        assert_problem(response, 409, "overflow")
        assert await balances(ledger, credit) == balance_of(credits_posted=MAX_AMOUNT_MINOR)
        assert await balances(ledger, second) == balance_of()

    async def test_overflow_of_the_debit_balance(self, ledger: httpx.AsyncClient) -> None:
        debit, first = await _pair(ledger)
        second = (await create_account(ledger))["id"]
        await transfer(ledger, debit, first, MAX_AMOUNT_MINOR - 5)

        response = await post_transfer(ledger, transfer_body(debit, second, 6))

        assert_problem(response, 409, "overflow")
        await transfer(ledger, debit, second, 5)  # exactly up to 2^63-1 is fine
        assert await balances(ledger, debit) == balance_of(debits_posted=MAX_AMOUNT_MINOR)

    async def test_overflow_of_a_pending_balance(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger)
        await transfer(ledger, debit, credit, MAX_AMOUNT_MINOR, pending=True)

        response = await post_transfer(ledger, transfer_body(debit, credit, 1, pending=True))

        assert_problem(response, 409, "overflow")
        assert await balances(ledger, debit) == balance_of(debits_pending=MAX_AMOUNT_MINOR)

    @pytest.mark.parametrize("side", ["debit", "credit"])
    async def test_account_not_found(self, ledger: httpx.AsyncClient, side: str) -> None:
        existing = (await create_account(ledger))["id"]
        missing = unique_id("acc")
        debit, credit = (missing, existing) if side == "debit" else (existing, missing)
        body = transfer_body(debit, credit, 100)

        response = await post_transfer(ledger, body)

        assert_problem(response, 404, "account_not_found")
        assert_problem(await get_transfer(ledger, body["id"]), 404, "transfer_not_found")
        assert await balances(ledger, existing) == balance_of()

    async def test_exceeds_credits(self, ledger: httpx.AsyncClient) -> None:
        wallet = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        sink = (await create_account(ledger))["id"]
        await fund(ledger, wallet, 100)

        response = await post_transfer(ledger, transfer_body(wallet, sink, 101))

        assert_problem(response, 409, "exceeds_credits")
        await transfer(ledger, wallet, sink, 100)  # exactly the balance is allowed
        assert await balances(ledger, wallet) == balance_of(debits_posted=100, credits_posted=100)
        assert_problem(
            await post_transfer(ledger, transfer_body(wallet, sink, 1)), 409, "exceeds_credits"
        )

    async def test_exceeds_credits_counts_pending_debits(self, ledger: httpx.AsyncClient) -> None:
        wallet = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        sink = (await create_account(ledger))["id"]
        await fund(ledger, wallet, 100)
        await transfer(ledger, wallet, sink, 60, pending=True)

        posted = await post_transfer(ledger, transfer_body(wallet, sink, 41))
        reserved = await post_transfer(ledger, transfer_body(wallet, sink, 41, pending=True))

        assert_problem(posted, 409, "exceeds_credits")
        assert_problem(reserved, 409, "exceeds_credits")
        await transfer(ledger, wallet, sink, 40)
        assert await balances(ledger, wallet) == balance_of(
            debits_pending=60, debits_posted=40, credits_posted=100
        )

    async def test_pending_credits_do_not_fund_a_debit(self, ledger: httpx.AsyncClient) -> None:
        wallet = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        source, sink = await _pair(ledger)
        await transfer(ledger, source, wallet, 100, pending=True)

        response = await post_transfer(ledger, transfer_body(wallet, sink, 1))

        assert_problem(response, 409, "exceeds_credits")

    async def test_exceeds_debits(self, ledger: httpx.AsyncClient) -> None:
        limited = (await create_account(ledger, flags=CREDITS_LIMITED))["id"]
        other = (await create_account(ledger))["id"]
        await transfer(ledger, limited, other, 70)

        response = await post_transfer(ledger, transfer_body(other, limited, 71))

        assert_problem(response, 409, "exceeds_debits")
        await transfer(ledger, other, limited, 50, pending=True)
        assert_problem(
            await post_transfer(ledger, transfer_body(other, limited, 21)), 409, "exceeds_debits"
        )
        await transfer(ledger, other, limited, 20)
        assert await balances(ledger, limited) == balance_of(
            debits_posted=70, credits_pending=50, credits_posted=20
        )

    async def test_timeout_without_pending_is_refused(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger)

        response = await post_transfer(ledger, transfer_body(debit, credit, 5, timeout_seconds=60))

        assert_problem(response, 422, "timeout_reserved_for_pending_transfer")
        assert await balances(ledger, debit) == balance_of()

    async def test_invalid_payload_is_refused(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger)
        for change in (
            {"id": "bad id"},
            {"id": "x" * 129},
            {"id": None},
            {"currency": "XXX1"},
            {"code": 70000},
            {"timeout_seconds": 0, "pending": True},
            {"metadata": {"blob": "x" * 5000}},
            {"metadata": ["not", "an", "object"]},
            {"extra": True},
        ):
            response = await post_transfer(ledger, {**transfer_body(debit, credit, 5), **change})

            assert_problem(response, 422, "validation_failed")
        assert await balances(ledger, debit) == balance_of()

    async def test_malformed_json_is_a_problem_not_a_crash(self, ledger: httpx.AsyncClient) -> None:
        response = await ledger.post(
            "/v1/ledger/transfers",
            content=b'{"id": ',
            headers={"content-type": "application/json"},
        )

        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"].startswith("application/problem+json")

    async def test_money_is_conserved(self, ledger: httpx.AsyncClient) -> None:
        a, b = await _pair(ledger, "KWD")
        c = (await create_account(ledger, currency="KWD"))["id"]
        await transfer(ledger, a, b, 1_000, currency="KWD")
        await transfer(ledger, b, c, 400, currency="KWD")
        await transfer(ledger, c, a, 1, currency="KWD", pending=True)

        trial = await assert_trial_balanced(ledger)

        kwd = currency_totals(trial, "KWD")
        assert (kwd["debits_posted"], kwd["credits_posted"]) == (1_400, 1_400)
        assert (kwd["debits_pending"], kwd["credits_pending"]) == (1, 1)


class TestGetTransfer:
    async def test_unknown_transfer_is_not_found(self, ledger: httpx.AsyncClient) -> None:
        response = await get_transfer(ledger, unique_id("txf"))

        assert_problem(response, 404, "transfer_not_found")


class TestListTransfers:
    async def test_by_account_across_pages(self, ledger: httpx.AsyncClient) -> None:
        account, other = await _pair(ledger)
        third, fourth = await _pair(ledger)
        touching = []
        for number in range(7):
            if number % 2:
                touching.append((await transfer(ledger, account, other, number + 1))["id"])
            else:
                touching.append((await transfer(ledger, third, account, number + 1))["id"])
            await transfer(ledger, third, fourth, 1)  # not touching `account`

        pages = await collect_pages(
            ledger, "/v1/ledger/transfers", {"account_id": account}, limit=3
        )

        assert [len(page) for page in pages] == [3, 3, 1]
        seen = [item["id"] for page in pages for item in page]
        assert seen == touching  # creation order, no duplicates, none missing

    async def test_a_resolved_pending_transfer_is_listed_once(
        self, ledger: httpx.AsyncClient
    ) -> None:
        account, other = await _pair(ledger)
        posted = await transfer(ledger, other, account, 5, pending=True)
        voided = await transfer(ledger, account, other, 3, pending=True)
        assert_status(await post_pending(ledger, posted["id"], 4), 200)
        assert_status(await void_pending(ledger, voided["id"]), 200)

        pages = await collect_pages(
            ledger, "/v1/ledger/transfers", {"account_id": account}, limit=1
        )

        listed = [item for page in pages for item in page]
        assert [(item["id"], item["status"]) for item in listed] == [
            (posted["id"], "posted"),
            (voided["id"], "voided"),
        ]

    async def test_all_transfers_without_a_filter(self, ledger: httpx.AsyncClient) -> None:
        debit, credit = await _pair(ledger)
        created = [(await transfer(ledger, debit, credit, 1))["id"] for _ in range(5)]

        pages = await collect_pages(ledger, "/v1/ledger/transfers", {}, limit=2)

        seen = [item["id"] for page in pages for item in page]
        assert len(seen) == len(set(seen))
        assert [item for item in seen if item in created] == created

    async def test_account_without_transfers_has_an_empty_list(
        self, ledger: httpx.AsyncClient
    ) -> None:
        account = (await create_account(ledger))["id"]

        response = await ledger.get("/v1/ledger/transfers", params={"account_id": account})

        assert assert_status(response, 200) == {"data": [], "next_cursor": None}
