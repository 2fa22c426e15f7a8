"""Statements, point-in-time balances and the trial balance over HTTP."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from typing import Any

import httpx

from paymesh.kernel.money import MAX_AMOUNT_MINOR
from tests.ledger.factories import (
    DEBITS_LIMITED,
    assert_problem,
    assert_status,
    balance_of,
    balances,
    collect_pages,
    create_account,
    post_pending,
    transfer,
    trial_balance,
    unique_id,
    void_pending,
)


def _cursor(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


ENTRY_FIELDS = ("transfer_id", "side", "kind", "amount", "balance_posted")


def _summary(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(entry[name] for name in ENTRY_FIELDS) for entry in entries]


async def _entries(client: httpx.AsyncClient, account_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/ledger/accounts/{account_id}/entries")
    page = assert_status(response, 200)
    assert page["next_cursor"] is None
    data: list[dict[str, Any]] = page["data"]
    return data


async def _balance_at(
    client: httpx.AsyncClient, account_id: str, at: dt.datetime | str
) -> httpx.Response:
    value = at if isinstance(at, str) else at.isoformat()
    return await client.get(f"/v1/ledger/accounts/{account_id}/balance", params={"at": value})


class TestListEntries:
    async def test_statement_of_every_kind_of_change(self, ledger: httpx.AsyncClient) -> None:
        wallet = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        source = (await create_account(ledger))["id"]
        merchant = (await create_account(ledger))["id"]
        funding = await transfer(ledger, source, wallet, 1_000)
        hold = await transfer(ledger, wallet, merchant, 300, pending=True)
        assert_status(await post_pending(ledger, hold["id"], 200), 200)
        cancelled = await transfer(ledger, wallet, merchant, 50, pending=True)
        assert_status(await void_pending(ledger, cancelled["id"]), 200)
        refund = await transfer(ledger, merchant, wallet, 25)

        entries = await _entries(ledger, wallet)

        assert _summary(entries) == [
            (funding["id"], "credit", "posted", 1_000, 1_000),
            (hold["id"], "debit", "pending", 300, 1_000),
            (hold["id"], "debit", "post", 200, 800),
            (cancelled["id"], "debit", "pending", 50, 800),
            (cancelled["id"], "debit", "void", 50, 800),
            (refund["id"], "credit", "posted", 25, 825),
        ]
        assert [entry["debits_pending"] for entry in entries] == [0, 300, 0, 50, 0, 0]
        assert entries[-1]["credits_posted"] == 1_025
        assert entries[-1]["debits_posted"] == 200
        assert entries[-1]["credits_pending"] == 0
        ids = [entry["id"] for entry in entries]
        assert ids == sorted(ids)
        merchant_entries = await _entries(ledger, merchant)
        assert [(entry["side"], entry["kind"]) for entry in merchant_entries] == [
            ("credit", "pending"),
            ("credit", "post"),
            ("credit", "pending"),
            ("credit", "void"),
            ("debit", "posted"),
        ]
        assert merchant_entries[-1]["balance_posted"] == 175

    async def test_across_pages(self, ledger: httpx.AsyncClient) -> None:
        account = (await create_account(ledger))["id"]
        other = (await create_account(ledger))["id"]
        made = [(await transfer(ledger, other, account, amount))["id"] for amount in range(1, 8)]

        pages = await collect_pages(ledger, f"/v1/ledger/accounts/{account}/entries", {}, limit=3)

        assert [len(page) for page in pages] == [3, 3, 1]
        entries = [entry for page in pages for entry in page]
        assert [entry["transfer_id"] for entry in entries] == made
        assert [entry["balance_posted"] for entry in entries] == [1, 3, 6, 10, 15, 21, 28]

    async def test_account_without_transfers_has_an_empty_statement(
        self, ledger: httpx.AsyncClient
    ) -> None:
        account = (await create_account(ledger))["id"]

        assert await _entries(ledger, account) == []

    async def test_unknown_account_is_not_found(self, ledger: httpx.AsyncClient) -> None:
        response = await ledger.get(f"/v1/ledger/accounts/{unique_id('acc')}/entries")

        assert_problem(response, 404, "account_not_found")

    async def test_invalid_cursor_is_refused(self, ledger: httpx.AsyncClient) -> None:
        account = (await create_account(ledger))["id"]

        response = await ledger.get(
            f"/v1/ledger/accounts/{account}/entries", params={"cursor": "bm90LWEtY3Vyc29y"}
        )

        assert_problem(response, 422, "invalid_cursor")


class TestGetBalance:
    async def test_balance_between_two_transfers_is_the_state_then(
        self, ledger: httpx.AsyncClient
    ) -> None:
        account = (await create_account(ledger))["id"]
        other = (await create_account(ledger))["id"]
        first = await transfer(ledger, other, account, 100)
        await asyncio.sleep(0.01)
        second = await transfer(ledger, account, other, 30, pending=True)
        first_at = dt.datetime.fromisoformat(first["created_at"])
        second_at = dt.datetime.fromisoformat(second["created_at"])
        assert first_at < second_at
        between = first_at + (second_at - first_at) / 2

        response = await _balance_at(ledger, account, between)

        balance = assert_status(response, 200)
        assert balance["account_id"] == account
        assert balance["currency"] == "USD"
        assert dt.datetime.fromisoformat(balance["at"]) == between
        assert {key: balance[key] for key in balance_of()} == balance_of(credits_posted=100)
        at_second = assert_status(await _balance_at(ledger, account, second_at), 200)
        now = await balances(ledger, account)
        assert {key: at_second[key] for key in balance_of()} == now
        assert now == balance_of(debits_pending=30, credits_posted=100)

    async def test_before_the_first_entry_everything_is_zero(
        self, ledger: httpx.AsyncClient
    ) -> None:
        account = (await create_account(ledger))["id"]
        other = (await create_account(ledger))["id"]
        created = await transfer(ledger, other, account, 100)
        before = dt.datetime.fromisoformat(created["created_at"]) - dt.timedelta(seconds=1)

        balance = assert_status(await _balance_at(ledger, account, before), 200)

        assert {key: balance[key] for key in balance_of()} == balance_of()

    async def test_other_offsets_mean_the_same_instant(self, ledger: httpx.AsyncClient) -> None:
        account = (await create_account(ledger))["id"]
        other = (await create_account(ledger))["id"]
        created = await transfer(ledger, other, account, 100)
        at = dt.datetime.fromisoformat(created["created_at"]) + dt.timedelta(milliseconds=1)
        elsewhere = at.astimezone(dt.timezone(dt.timedelta(hours=-5)))

        balance = assert_status(await _balance_at(ledger, account, elsewhere), 200)

        assert balance["credits_posted"] == 100

    async def test_naive_or_invalid_instant_is_refused(self, ledger: httpx.AsyncClient) -> None:
        account = (await create_account(ledger))["id"]
        for at in (
            "2030-01-01T00:00:00",
            "yesterday",
            "",
            "0001-01-01T00:00:00+01:00",  # no UTC equivalent
            "9999-12-31T23:59:59-01:00",
        ):
            response = await _balance_at(ledger, account, at)

            assert_problem(response, 422, "validation_failed")

    async def test_missing_instant_is_refused(self, ledger: httpx.AsyncClient) -> None:
        account = (await create_account(ledger))["id"]

        response = await ledger.get(f"/v1/ledger/accounts/{account}/balance")

        assert_problem(response, 422, "validation_failed")

    async def test_unknown_account_is_not_found(self, ledger: httpx.AsyncClient) -> None:
        response = await _balance_at(ledger, unique_id("acc"), dt.datetime.now(dt.UTC))

        assert_problem(response, 404, "account_not_found")


class TestTrialBalance:
    async def test_empty_ledger(self, ledger: httpx.AsyncClient) -> None:
        assert await trial_balance(ledger) == {"currencies": [], "balanced": True}

    async def test_totals_per_currency(self, ledger: httpx.AsyncClient) -> None:
        usd = [(await create_account(ledger))["id"] for _ in range(3)]
        eur = [(await create_account(ledger, currency="EUR"))["id"] for _ in range(2)]
        await transfer(ledger, usd[0], usd[1], 100)
        await transfer(ledger, usd[1], usd[2], 40)
        hold = await transfer(ledger, usd[2], usd[0], 15, pending=True)
        await transfer(ledger, usd[2], usd[0], 5, pending=True)
        assert_status(await post_pending(ledger, hold["id"], 10), 200)
        await transfer(ledger, eur[0], eur[1], 70, currency="EUR")

        trial = await trial_balance(ledger)

        assert trial == {
            "balanced": True,
            "currencies": [
                {
                    "currency": "EUR",
                    "debits_posted": 70,
                    "credits_posted": 70,
                    "debits_pending": 0,
                    "credits_pending": 0,
                    "balanced": True,
                },
                {
                    "currency": "USD",
                    "debits_posted": 150,
                    "credits_posted": 150,
                    "debits_pending": 5,
                    "credits_pending": 5,
                    "balanced": True,
                },
            ],
        }

    async def test_totals_beyond_64_bits_are_exact(self, ledger: httpx.AsyncClient) -> None:
        for _ in range(3):
            debit = (await create_account(ledger, currency="JPY"))["id"]
            credit = (await create_account(ledger, currency="JPY"))["id"]
            await transfer(ledger, debit, credit, MAX_AMOUNT_MINOR, currency="JPY")

        trial = await trial_balance(ledger)

        (jpy,) = trial["currencies"]
        assert jpy["debits_posted"] == jpy["credits_posted"] == 3 * MAX_AMOUNT_MINOR
        assert trial["balanced"] is True


PAGED = ("/v1/ledger/accounts", "/v1/ledger/transfers", "/v1/ledger/transfers?account_id=a")


class TestCursors:
    """Cursors are opaque, but a client can send anything: never a 500."""

    async def test_a_tampered_cursor_is_refused(self, ledger: httpx.AsyncClient) -> None:
        account = (await create_account(ledger))["id"]
        for values in (
            [1, 2],
            None,
            {"a": 1},
            ["2030-01-01T00:00:00+00:00"],
            "x",
            ["2030-01-01T00:00:00+00:00", 5],
            ["2030-01-01T00:00:00", "x"],  # naive
            ["9999-12-31T23:59:59-05:00", "x"],  # beyond year 9999 in UTC
            ["2030-01-01T00:00:00+00:00", None],
        ):
            for path in PAGED:
                response = await ledger.get(path, params={"cursor": _cursor(values)})

                assert_problem(response, 422, "invalid_cursor")
        for values in (["x"], [1.5], [2**70], None, [1, 2], [True]):
            response = await ledger.get(
                f"/v1/ledger/accounts/{account}/entries", params={"cursor": _cursor(values)}
            )

            assert_problem(response, 422, "invalid_cursor")
