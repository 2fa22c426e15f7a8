"""`POST /transfers` and `/transfers/batch` have two ways in: a fast ASGI path for plain
JSON requests and the FastAPI route (taken, for instance, when an Idempotency-Key is sent).
Both must keep the same contract; and the Idempotency-Key itself works on ledger writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.ledger.factories import (
    DEBITS_LIMITED,
    assert_problem,
    assert_status,
    balance_of,
    balances,
    client_for,
    collect_pages,
    create_account,
    fund,
    transfer_body,
    unique_id,
)

Ways = ("fast-path", "route")


async def _send(
    client: httpx.AsyncClient, path: str, body: Any, way: str, **headers: str
) -> httpx.Response:
    if way == "route":
        headers["idempotency-key"] = unique_id("key")
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    return await client.post(
        path, content=content, headers={"content-type": "application/json", **headers}
    )


Scenario = Callable[[httpx.AsyncClient, str], Awaitable[tuple[int, str | None]]]


def _outcome(response: httpx.Response) -> tuple[int, str | None]:
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        return response.status_code, response.json()["code"]
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, None


async def _accounts(client: httpx.AsyncClient) -> tuple[str, str]:
    wallet = (await create_account(client, flags=DEBITS_LIMITED))["id"]
    sink = (await create_account(client))["id"]
    await fund(client, wallet, 100)
    return wallet, sink


async def _created(client: httpx.AsyncClient, way: str) -> tuple[int, str | None]:
    wallet, sink = await _accounts(client)
    response = await _send(client, "/v1/ledger/transfers", transfer_body(wallet, sink, 10), way)
    assert response.json()["amount"] == 10
    return _outcome(response)


async def _replayed(client: httpx.AsyncClient, way: str) -> tuple[int, str | None]:
    wallet, sink = await _accounts(client)
    body = transfer_body(wallet, sink, 10)
    first = await _send(client, "/v1/ledger/transfers", body, way)
    again = await _send(client, "/v1/ledger/transfers", body, way)
    assert again.json() == first.json()
    return _outcome(again)


def _refused(change: dict[str, Any]) -> Scenario:
    async def scenario(client: httpx.AsyncClient, way: str) -> tuple[int, str | None]:
        wallet, sink = await _accounts(client)
        body = {**transfer_body(wallet, sink, 10), **change}
        if "debit_account_id" in change and change["debit_account_id"] == "same":
            body["debit_account_id"] = sink
        response = await _send(client, "/v1/ledger/transfers", body, way)
        assert await balances(client, sink) == balance_of()
        return _outcome(response)

    return scenario


async def _different_fields(client: httpx.AsyncClient, way: str) -> tuple[int, str | None]:
    wallet, sink = await _accounts(client)
    body = transfer_body(wallet, sink, 10)
    assert_status(await _send(client, "/v1/ledger/transfers", body, way), 201)
    changed = await _send(client, "/v1/ledger/transfers", {**body, "amount": 11}, way)
    return _outcome(changed)


async def _malformed(client: httpx.AsyncClient, way: str) -> tuple[int, str | None]:
    return _outcome(await _send(client, "/v1/ledger/transfers", b'{"id": "x",', way))


async def _unauthenticated(client: httpx.AsyncClient, way: str) -> tuple[int, str | None]:
    wallet, sink = await _accounts(client)
    body = transfer_body(wallet, sink, 10)
    response = await _send(client, "/v1/ledger/transfers", body, way, authorization="")
    return _outcome(response)


async def _batch(client: httpx.AsyncClient, way: str) -> tuple[int, str | None]:
    wallet, sink = await _accounts(client)
    items = [transfer_body(wallet, sink, 60), transfer_body(wallet, sink, 60)]
    response = await _send(
        client, "/v1/ledger/transfers/batch", {"transfers": items, "atomic": True}, way
    )
    results = assert_status(response, 200)["results"]
    assert [item["code"] for item in results] == ["linked_transfer_failed", "exceeds_credits"]
    return _outcome(response)


async def _batch_too_large(client: httpx.AsyncClient, way: str) -> tuple[int, str | None]:
    wallet, sink = await _accounts(client)
    items = [transfer_body(wallet, sink, 1) for _ in range(8001)]
    body = {"transfers": items, "atomic": False}
    return _outcome(await _send(client, "/v1/ledger/transfers/batch", body, way))


SCENARIOS: dict[str, tuple[Scenario, tuple[int, str | None]]] = {
    "created": (_created, (201, None)),
    "replayed": (_replayed, (200, None)),
    "different-fields": (_different_fields, (409, "exists_with_different_fields")),
    "exceeds-credits": (_refused({"amount": 101}), (409, "exceeds_credits")),
    "zero": (_refused({"amount": 0}), (422, "amount_must_be_positive")),
    "float": (_refused({"amount": 10.0}), (422, "validation_failed")),
    "string": (_refused({"amount": "10"}), (422, "validation_failed")),
    "too-large": (_refused({"amount": 2**63}), (422, "validation_failed")),
    "unknown-field": (_refused({"fee": 1}), (422, "validation_failed")),
    "same-accounts": (_refused({"debit_account_id": "same"}), (422, "accounts_must_be_different")),
    "currency": (_refused({"currency": "EUR"}), (422, "currency_mismatch")),
    "unknown-account": (_refused({"credit_account_id": "nobody"}), (404, "account_not_found")),
    "timeout": (
        _refused({"timeout_seconds": 5}),
        (422, "timeout_reserved_for_pending_transfer"),
    ),
    "nul": (_refused({"metadata": {"note": "a\x00b"}}), (400, "invalid_characters")),
    "malformed": (_malformed, (400, "malformed_json")),
    "unauthenticated": (_unauthenticated, (401, "unauthenticated")),
    "batch": (_batch, (200, None)),
    "batch-too-large": (_batch_too_large, (422, "validation_failed")),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
class TestBothWaysIn:
    async def test_answer_alike(self, ledger: httpx.AsyncClient, name: str) -> None:
        scenario, expected = SCENARIOS[name]

        outcomes = {way: await scenario(ledger, way) for way in Ways}

        assert outcomes == {way: expected for way in Ways}


class TestForbiddenOnBothWays:
    async def test_customer_is_forbidden(
        self, ledger_platform: Platform, ledger: httpx.AsyncClient
    ) -> None:
        wallet, sink = await _accounts(ledger)
        async with client_for(ledger_platform, subject="usr_c", roles=["customer"]) as customer:
            for way in Ways:
                body = transfer_body(wallet, sink, 10)
                single = await _send(customer, "/v1/ledger/transfers", body, way)
                many = await _send(
                    customer, "/v1/ledger/transfers/batch", {"transfers": [body]}, way
                )
                assert_problem(single, 403, "forbidden")
                assert_problem(many, 403, "forbidden")
        assert await balances(ledger, sink) == balance_of()


async def _keyed(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str
) -> httpx.Response:
    return await client.post(path, json=body, headers={"idempotency-key": key})


class TestIdempotencyKey:
    async def test_an_account_without_id_is_created_once(self, ledger: httpx.AsyncClient) -> None:
        key = unique_id("key")
        body = {"currency": "CZK", "metadata": {"owner": "x"}}

        first = await _keyed(ledger, "/v1/ledger/accounts", body, key)
        again = await _keyed(ledger, "/v1/ledger/accounts", body, key)

        assert assert_status(again, 201) == assert_status(first, 201)
        assert again.headers.get("idempotent-replayed") == "true"
        assert first.headers.get("idempotent-replayed") is None
        pages = await collect_pages(ledger, "/v1/ledger/accounts", {"currency": "CZK"}, limit=10)
        assert [item["id"] for page in pages for item in page] == [first.json()["id"]]

    async def test_a_transfer_replay_is_the_first_response(self, ledger: httpx.AsyncClient) -> None:
        wallet, sink = await _accounts(ledger)
        body = transfer_body(wallet, sink, 10)
        key = unique_id("key")

        first = await _keyed(ledger, "/v1/ledger/transfers", body, key)
        again = await _keyed(ledger, "/v1/ledger/transfers", body, key)

        assert assert_status(again, 201) == assert_status(first, 201)
        assert again.headers.get("idempotent-replayed") == "true"
        assert await balances(ledger, sink) == balance_of(credits_posted=10)

    async def test_the_same_key_with_another_body_is_refused(
        self, ledger: httpx.AsyncClient
    ) -> None:
        wallet, sink = await _accounts(ledger)
        key = unique_id("key")
        assert_status(
            await _keyed(ledger, "/v1/ledger/transfers", transfer_body(wallet, sink, 10), key),
            201,
        )

        response = await _keyed(
            ledger, "/v1/ledger/transfers", transfer_body(wallet, sink, 20), key
        )

        assert_problem(response, 422, "idempotency_key_reused")
        assert await balances(ledger, sink) == balance_of(credits_posted=10)

    async def test_keys_belong_to_their_caller(
        self, ledger_platform: Platform, ledger: httpx.AsyncClient
    ) -> None:
        wallet, sink = await _accounts(ledger)
        key = unique_id("key")
        assert_status(
            await _keyed(ledger, "/v1/ledger/transfers", transfer_body(wallet, sink, 10), key),
            201,
        )

        async with client_for(ledger_platform, subject="usr_finance", roles=["finance"]) as other:
            response = await _keyed(
                other, "/v1/ledger/transfers", transfer_body(wallet, sink, 20), key
            )

        assert assert_status(response, 201)["amount"] == 20
        assert response.headers.get("idempotent-replayed") is None

    async def test_a_refusal_is_replayed_too(self, ledger: httpx.AsyncClient) -> None:
        wallet, sink = await _accounts(ledger)
        body = transfer_body(wallet, sink, 500)
        key = unique_id("key")
        first = await _keyed(ledger, "/v1/ledger/transfers", body, key)
        await fund(ledger, wallet, 1_000)  # the transfer would now succeed

        again = await _keyed(ledger, "/v1/ledger/transfers", body, key)

        assert_problem(first, 409, "exceeds_credits")
        assert_problem(again, 409, "exceeds_credits")
        assert again.headers.get("idempotent-replayed") == "true"
        assert await balances(ledger, sink) == balance_of()
