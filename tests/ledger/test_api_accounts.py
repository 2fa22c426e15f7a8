"""Accounts over HTTP: open, read, list."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.ledger.factories import (
    CREDITS_LIMITED,
    DEBITS_LIMITED,
    account_body,
    assert_problem,
    assert_status,
    collect_pages,
    create_account,
    unique_id,
)


class TestCreateAccount:
    async def test_created(self, ledger: httpx.AsyncClient) -> None:
        account_id = unique_id("acc")
        body = account_body(
            id=account_id, currency="EUR", code=7, flags=DEBITS_LIMITED, metadata={"k": "v"}
        )

        response = await ledger.post("/v1/ledger/accounts", json=body)

        account = assert_status(response, 201)
        assert account["id"] == account_id
        assert account["currency"] == "EUR"
        assert account["code"] == 7
        assert account["flags"] == {
            "debits_must_not_exceed_credits": True,
            "credits_must_not_exceed_debits": False,
        }
        assert account["metadata"] == {"k": "v"}
        for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted"):
            assert account[name] == 0
        fetched = assert_status(await ledger.get(f"/v1/ledger/accounts/{account_id}"), 200)
        assert fetched == account

    async def test_generates_an_id_when_absent(self, ledger: httpx.AsyncClient) -> None:
        response = await ledger.post("/v1/ledger/accounts", json={"currency": "JPY"})

        account = assert_status(response, 201)
        assert account["id"].startswith("acc_")
        assert account["code"] == 0
        assert account["flags"] == {
            "debits_must_not_exceed_credits": False,
            "credits_must_not_exceed_debits": False,
        }

    async def test_same_id_and_fields_returns_the_account_with_200(
        self, ledger: httpx.AsyncClient
    ) -> None:
        body = account_body(id=unique_id("acc"), code=3, flags=CREDITS_LIMITED, metadata={"a": 1})
        first = assert_status(await ledger.post("/v1/ledger/accounts", json=body), 201)

        again = await ledger.post("/v1/ledger/accounts", json=body)

        assert assert_status(again, 200) == first

    @pytest.mark.parametrize(
        "change",
        [
            {"currency": "EUR"},
            {"code": 4},
            {"flags": {"debits_must_not_exceed_credits": True}},
            {"metadata": {"a": 2}},
        ],
        ids=["currency", "code", "flags", "metadata"],
    )
    async def test_same_id_with_different_fields_is_a_conflict(
        self, ledger: httpx.AsyncClient, change: dict[str, Any]
    ) -> None:
        body = account_body(id=unique_id("acc"), code=3, metadata={"a": 1})
        first = assert_status(await ledger.post("/v1/ledger/accounts", json=body), 201)

        response = await ledger.post("/v1/ledger/accounts", json={**body, **change})

        assert_problem(response, 409, "exists_with_different_fields")
        unchanged = assert_status(await ledger.get(f"/v1/ledger/accounts/{body['id']}"), 200)
        assert unchanged == first

    async def test_both_flags_are_refused(self, ledger: httpx.AsyncClient) -> None:
        body = account_body(id=unique_id("acc"), flags=DEBITS_LIMITED + CREDITS_LIMITED)

        response = await ledger.post("/v1/ledger/accounts", json=body)

        assert_problem(response, 422, "flags_are_mutually_exclusive")
        assert_problem(
            await ledger.get(f"/v1/ledger/accounts/{body['id']}"), 404, "account_not_found"
        )

    async def test_unknown_currency_is_refused(self, ledger: httpx.AsyncClient) -> None:
        for currency in ("XYZ", "usd", "US", "", 840, None):
            response = await ledger.post("/v1/ledger/accounts", json={"currency": currency})

            assert_problem(response, 422, "validation_failed")

    async def test_invalid_payload_is_refused(self, ledger: httpx.AsyncClient) -> None:
        for change in ({"code": -1}, {"code": 65536}, {"id": "has space"}, {"unknown": 1}):
            response = await ledger.post("/v1/ledger/accounts", json={"currency": "USD", **change})

            assert_problem(response, 422, "validation_failed")
        assert assert_status(await ledger.get("/v1/ledger/accounts"), 200)["data"] == []


class TestGetAccount:
    async def test_unknown_account_is_not_found(self, ledger: httpx.AsyncClient) -> None:
        response = await ledger.get(f"/v1/ledger/accounts/{unique_id('acc')}")

        assert_problem(response, 404, "account_not_found")


class TestListAccounts:
    async def test_filters_by_currency_and_code_across_pages(
        self, ledger: httpx.AsyncClient
    ) -> None:
        wanted = [(await create_account(ledger, currency="GBP", code=11))["id"] for _ in range(7)]
        for currency, code in (("GBP", 12), ("CHF", 11), ("CHF", 12)):
            for _ in range(2):
                await create_account(ledger, currency=currency, code=code)

        pages = await collect_pages(
            ledger, "/v1/ledger/accounts", {"currency": "GBP", "code": 11}, limit=3
        )

        assert [len(page) for page in pages] == [3, 3, 1]
        seen = [account["id"] for page in pages for account in page]
        assert seen == wanted  # creation order, no duplicates, none missing
        assert all(a["currency"] == "GBP" and a["code"] == 11 for page in pages for a in page)

    async def test_filters_by_currency_only(self, ledger: httpx.AsyncClient) -> None:
        sek = {(await create_account(ledger, currency="SEK", code=code))["id"] for code in (1, 2)}
        await create_account(ledger, currency="NOK")

        pages = await collect_pages(ledger, "/v1/ledger/accounts", {"currency": "SEK"}, limit=1)

        assert [len(page) for page in pages] == [1, 1]
        assert {account["id"] for page in pages for account in page} == sek

    async def test_an_exact_multiple_of_the_page_size_ends_without_a_cursor(
        self, ledger: httpx.AsyncClient
    ) -> None:
        for _ in range(4):
            await create_account(ledger, currency="DKK")

        pages = await collect_pages(ledger, "/v1/ledger/accounts", {"currency": "DKK"}, limit=2)

        assert [len(page) for page in pages] == [2, 2]

    async def test_invalid_cursor_is_refused(self, ledger: httpx.AsyncClient) -> None:
        response = await ledger.get("/v1/ledger/accounts", params={"cursor": "not-a-cursor"})

        assert_problem(response, 422, "invalid_cursor")

    async def test_limit_out_of_range_is_refused(self, ledger: httpx.AsyncClient) -> None:
        for limit in (0, 1001, -1, "ten"):
            response = await ledger.get("/v1/ledger/accounts", params={"limit": limit})

            assert_problem(response, 422, "validation_failed")
