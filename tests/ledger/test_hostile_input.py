"""Input sent to crash or exhaust the ledger: every answer is a 4xx problem document and
nothing moves, on both ways in (the fast path and the FastAPI route, taken when an
Idempotency-Key is sent), for accounts, transfers, batches and pending posts."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.conftest import http_client
from tests.ledger.factories import (
    assert_problem,
    assert_status,
    balance_of,
    balances,
    create_account,
    fund,
    transfer,
    transfer_body,
    unique_id,
)

Ways = ("fast-path", "route")
KIB = 1024
MIB = 1024 * KIB
TRANSFERS = "/v1/ledger/transfers"
BATCH = "/v1/ledger/transfers/batch"
ACCOUNTS = "/v1/ledger/accounts"


def encode(body: Any) -> bytes:
    """JSON as a client might send it: NaN and lone surrogates included."""
    return json.dumps(body, allow_nan=True).encode()


async def send(
    client: httpx.AsyncClient, path: str, content: bytes, way: str, **headers: str
) -> httpx.Response:
    if way == "route":
        headers["idempotency-key"] = unique_id("key")
    return await client.post(
        path, content=content, headers={"content-type": "application/json", **headers}
    )


async def accounts(client: httpx.AsyncClient) -> tuple[str, str]:
    wallet = (await create_account(client))["id"]
    sink = (await create_account(client))["id"]
    await fund(client, wallet, 1000)
    return wallet, sink


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


HOSTILE_METADATA: dict[str, tuple[str, tuple[int, str]]] = {
    "int-above-int64": ('{"n": 9223372036854775808}', (422, "validation_failed")),
    "int-below-int64": ('{"n": -9223372036854775809}', (422, "validation_failed")),
    "int-of-400-digits": ('{"n": ' + "9" * 400 + "}", (422, "validation_failed")),
    "nested-9": (json.dumps(nested(9)), (422, "validation_failed")),
    "nested-300": (json.dumps(nested(300)), (400, "malformed_json")),
    "nan": ('{"n": NaN}', (400, "malformed_json")),
    "infinity": ('{"n": Infinity}', (400, "malformed_json")),
    "float": ('{"n": 1.5}', (422, "validation_failed")),
    "lone-surrogate": ('{"n": "\\ud800"}', (400, "invalid_characters")),
    "lone-surrogate-key": ('{"\\udc00": 1}', (400, "invalid_characters")),
    "nul": ('{"n": "a\\u0000"}', (400, "invalid_characters")),
    "long-key": (json.dumps({"k" * 129: 1}), (422, "validation_failed")),
    "too-many-keys": (json.dumps({f"k{i}": i for i in range(257)}), (422, "validation_failed")),
}
METADATA_IDS = list(HOSTILE_METADATA)


def with_metadata(body: dict[str, Any], metadata: str) -> bytes:
    """`body` as JSON with its metadata replaced by the raw JSON text `metadata`."""
    text = json.dumps({**body, "metadata": "@METADATA@"})
    return text.replace('"@METADATA@"', metadata).encode()


class TestHostileMetadata:
    @pytest.mark.parametrize("name", METADATA_IDS)
    @pytest.mark.parametrize("way", Ways)
    async def test_on_a_transfer(self, ledger: httpx.AsyncClient, name: str, way: str) -> None:
        metadata, (status, code) = HOSTILE_METADATA[name]
        wallet, sink = await accounts(ledger)
        content = with_metadata(transfer_body(wallet, sink, 10), metadata)

        response = await send(ledger, TRANSFERS, content, way)

        assert_problem(response, status, code)
        assert await balances(ledger, sink) == balance_of()

    @pytest.mark.parametrize("name", METADATA_IDS)
    @pytest.mark.parametrize("way", Ways)
    async def test_in_a_batch(self, ledger: httpx.AsyncClient, name: str, way: str) -> None:
        metadata, (status, code) = HOSTILE_METADATA[name]
        wallet, sink = await accounts(ledger)
        item = with_metadata(transfer_body(wallet, sink, 10), metadata).decode()
        content = f'{{"transfers": [{item}], "atomic": false}}'.encode()

        response = await send(ledger, BATCH, content, way)

        assert_problem(response, status, code)
        assert await balances(ledger, sink) == balance_of()

    @pytest.mark.parametrize("name", METADATA_IDS)
    @pytest.mark.parametrize("way", Ways)
    async def test_on_an_account(self, ledger: httpx.AsyncClient, name: str, way: str) -> None:
        metadata, (status, code) = HOSTILE_METADATA[name]
        content = with_metadata({"id": unique_id("acc"), "currency": "USD"}, metadata)

        response = await send(ledger, ACCOUNTS, content, way)

        assert_problem(response, status, code)

    async def test_json_safe_metadata_is_kept_exactly(self, ledger: httpx.AsyncClient) -> None:
        wallet, sink = await accounts(ledger)
        metadata = {
            "big": 2**63 - 1,
            "small": -(2**63),
            "text": "caf\u00e9 \U0001f600",
            "list": [1, "two", None, True, {"deep": nested(4)}],
        }

        created = await transfer(ledger, wallet, sink, 10, metadata=metadata)

        assert created["metadata"] == metadata


STRICT_TRANSFER_CHANGES = {
    "pending-yes": {"pending": "yes"},
    "pending-0": {"pending": 0},
    "pending-1": {"pending": 1},
    "code-string": {"code": "7"},
    "code-float": {"code": 7.0},
    "code-bool": {"code": True},
    "timeout-string": {"pending": True, "timeout_seconds": "60"},
    "amount-string": {"amount": "10"},
    "amount-bool": {"amount": True},
}


class TestStrictMoneySchemas:
    @pytest.mark.parametrize("name", list(STRICT_TRANSFER_CHANGES))
    @pytest.mark.parametrize("way", Ways)
    async def test_a_transfer_field_is_not_coerced(
        self, ledger: httpx.AsyncClient, name: str, way: str
    ) -> None:
        wallet, sink = await accounts(ledger)
        body = {**transfer_body(wallet, sink, 10), **STRICT_TRANSFER_CHANGES[name]}

        single = await send(ledger, TRANSFERS, encode(body), way)
        batch = await send(ledger, BATCH, encode({"transfers": [body]}), way)

        assert_problem(single, 422, "validation_failed")
        assert_problem(batch, 422, "validation_failed")
        assert await balances(ledger, sink) == balance_of()

    @pytest.mark.parametrize("atomic", ["yes", 1, "true"])
    @pytest.mark.parametrize("way", Ways)
    async def test_batch_atomic_is_a_boolean(
        self, ledger: httpx.AsyncClient, atomic: Any, way: str
    ) -> None:
        wallet, sink = await accounts(ledger)
        body = {"transfers": [transfer_body(wallet, sink, 10)], "atomic": atomic}

        assert_problem(await send(ledger, BATCH, encode(body), way), 422, "validation_failed")
        assert await balances(ledger, sink) == balance_of()

    @pytest.mark.parametrize(
        "change",
        [{"code": "7"}, {"flags": {"debits_must_not_exceed_credits": "yes"}}, {"currency": 840}],
        ids=["code", "flag", "currency"],
    )
    async def test_an_account_field_is_not_coerced(
        self, ledger: httpx.AsyncClient, change: dict[str, Any]
    ) -> None:
        body = {"id": unique_id("acc"), "currency": "USD", **change}

        assert_problem(await ledger.post(ACCOUNTS, json=body), 422, "validation_failed")

    @pytest.mark.parametrize("amount", ["5", 5.0, True])
    async def test_a_post_amount_is_not_coerced(
        self, ledger: httpx.AsyncClient, amount: Any
    ) -> None:
        wallet, sink = await accounts(ledger)
        held = await transfer(ledger, wallet, sink, 10, pending=True)

        response = await ledger.post(f"{TRANSFERS}/{held['id']}/post", json={"amount": amount})

        assert_problem(response, 422, "validation_failed")
        assert (await balances(ledger, sink))["credits_posted"] == 0

    async def test_amounts_announce_their_minimum(self, ledger_platform: Platform) -> None:
        schemas = ledger_platform.openapi()["components"]["schemas"]

        assert schemas["TransferCreate"]["properties"]["amount"]["minimum"] == 1
        assert schemas["PendingPost"]["properties"]["amount"]["anyOf"][0]["minimum"] == 1


class TestDuplicateKeys:
    @pytest.mark.parametrize("way", Ways)
    async def test_a_second_amount_is_refused(self, ledger: httpx.AsyncClient, way: str) -> None:
        wallet, sink = await accounts(ledger)
        text = json.dumps(transfer_body(wallet, sink, 1))
        content = text.replace('"amount": 1,', '"amount": 1, "amount": 1000,').encode()
        assert content.count(b'"amount"') == 2

        single = await send(ledger, TRANSFERS, content, way)
        batch = await send(ledger, BATCH, b'{"transfers": [' + content + b"]}", way)

        assert_problem(single, 400, "duplicate_json_key")
        assert_problem(batch, 400, "duplicate_json_key")
        assert await balances(ledger, sink) == balance_of()

    async def test_on_an_account(self, ledger: httpx.AsyncClient) -> None:
        content = b'{"currency": "USD", "metadata": {"a": 1, "a": 2}}'

        response = await send(ledger, ACCOUNTS, content, "route")

        assert_problem(response, 400, "duplicate_json_key")


def cursor_of(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


class TestCursorText:
    @pytest.mark.parametrize("text", ["acc\u0000x", "acc\ud800"], ids=["nul", "surrogate"])
    async def test_a_cursor_cannot_carry_bad_text(
        self, ledger: httpx.AsyncClient, text: str
    ) -> None:
        account = (await create_account(ledger))["id"]
        cursor = cursor_of(["2030-01-01T00:00:00+00:00", text])

        for path in (ACCOUNTS, TRANSFERS):
            response = await ledger.get(path, params={"cursor": cursor})
            assert_problem(response, 422, "invalid_cursor")
        response = await ledger.get(f"{ACCOUNTS}/{account}/entries", params={"cursor": cursor})
        assert_problem(response, 422, "invalid_cursor")

    async def test_a_nul_in_a_query_value_is_refused(self, ledger: httpx.AsyncClient) -> None:
        response = await ledger.get(TRANSFERS, params={"account_id": "acc\u0000x"})

        assert_problem(response, 400, "invalid_characters")


class CountingBody:
    """A streamed request body that records how much the server pulled."""

    def __init__(self, total_bytes: int, chunk_bytes: int = 64 * KIB) -> None:
        self.total_bytes = total_bytes
        self.chunk = b" " * chunk_bytes
        self.pulled_bytes = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled_bytes < self.total_bytes:
            self.pulled_bytes += len(self.chunk)
            yield self.chunk


@pytest.fixture
async def anonymous(ledger_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(ledger_platform) as client:
        yield client


class TestBodyLimits:
    @pytest.mark.parametrize("path", [TRANSFERS, BATCH, ACCOUNTS])
    @pytest.mark.parametrize("way", Ways)
    async def test_an_anonymous_large_post_is_401_unread(
        self, anonymous: httpx.AsyncClient, path: str, way: str
    ) -> None:
        body = CountingBody(300 * MIB)
        headers = {"content-type": "application/json"}
        if way == "route":
            headers["idempotency-key"] = unique_id("key")

        response = await anonymous.post(path, content=body, headers=headers)

        assert_problem(response, 401, "unauthenticated")
        assert body.pulled_bytes == 0

    @pytest.mark.parametrize(("path", "limit"), [(TRANSFERS, MIB), (BATCH, 8 * MIB)])
    @pytest.mark.parametrize("way", Ways)
    async def test_over_the_limit_is_413_declared_or_streamed(
        self, ledger: httpx.AsyncClient, path: str, limit: int, way: str
    ) -> None:
        headers = {"content-type": "application/json"}
        if way == "route":
            headers["idempotency-key"] = unique_id("key")
        declared = CountingBody(limit + 1)
        streamed = CountingBody(10 * limit)

        by_length = await ledger.post(
            path, content=declared, headers={**headers, "content-length": str(limit + 1)}
        )
        by_chunks = await ledger.post(path, content=streamed, headers=headers)

        assert_problem(by_length, 413, "payload_too_large")
        assert declared.pulled_bytes == 0
        assert_problem(by_chunks, 413, "payload_too_large")
        assert streamed.pulled_bytes <= limit + len(streamed.chunk)

    async def test_a_batch_may_be_larger_than_a_single_transfer(
        self, ledger: httpx.AsyncClient
    ) -> None:
        wallet, sink = await accounts(ledger)
        note = "x" * 1000
        items = [transfer_body(wallet, sink, 1, metadata={"note": note}) for _ in range(1500)]
        content = encode({"transfers": items, "atomic": False})
        assert MIB < len(content) < 8 * MIB

        response = await send(ledger, BATCH, content, "fast-path")

        results = assert_status(response, 200)["results"]
        assert {result["status"] for result in results} == {"created"}
        assert_problem(
            await send(ledger, TRANSFERS, content, "fast-path"), 413, "payload_too_large"
        )
