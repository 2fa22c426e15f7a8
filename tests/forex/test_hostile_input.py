"""Hostile and wrong input: a 4xx problem document, nothing stored, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.forex.factories import bearer, outbox_events

GOOD = {"from": "USD", "to": "EUR", "amount": 10_000}
BAD_BODIES: list[tuple[str, Any]] = [
    ("float amount", GOOD | {"amount": 100.0}),
    ("fractional amount", GOOD | {"amount": 100.5}),
    ("string amount", GOOD | {"amount": "10000"}),
    ("boolean amount", GOOD | {"amount": True}),
    ("zero", GOOD | {"amount": 0}),
    ("negative", GOOD | {"amount": -1}),
    ("beyond int64", GOOD | {"amount": 2**63}),
    ("huge", GOOD | {"amount": 10**400}),
    ("unknown currency", GOOD | {"from": "XYZ"}),
    ("lower case", GOOD | {"from": "usd"}),
    ("no minor unit (gold)", GOOD | {"to": "XAU"}),
    ("same currency", GOOD | {"to": "USD"}),
    ("not quoted by the ECB", GOOD | {"to": "KWD"}),
    ("missing field", {"from": "USD", "to": "EUR"}),
    ("extra field", GOOD | {"rate": "2.0"}),
    ("bad side", GOOD | {"side": "both"}),
    ("null", None),
    ("list", [GOOD]),
    ("string body", "USD"),
    ("converts to nothing", {"from": "JPY", "to": "KWD", "amount": 1}),
]

pytestmark = pytest.mark.asyncio(loop_scope="module")


class TestBodies:
    @pytest.mark.parametrize(("case", "body"), BAD_BODIES, ids=[case for case, _ in BAD_BODIES])
    @pytest.mark.parametrize("path", ["/v1/forex/quotes", "/v1/forex/convert"])
    async def test_refused_and_nothing_stored(
        self,
        shared_platform: Platform,
        shared_client: httpx.AsyncClient,
        path: str,
        case: str,
        body: Any,
    ) -> None:
        if case == "bad side" and path.endswith("convert"):
            body = {key: value for key, value in body.items() if key != "side"} | {"side": 1}
        response = await shared_client.post(path, json=body, headers=bearer(shared_platform))

        assert 400 <= response.status_code < 500, (case, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert await outbox_events(shared_platform, "forex.quote.created") == []

    async def test_a_result_beyond_int64_is_422(
        self, shared_platform: Platform, shared_client: httpx.AsyncClient
    ) -> None:
        response = await shared_client.post(
            "/v1/forex/convert",
            json={"from": "EUR", "to": "IDR", "amount": 2**63 - 1},
            headers=bearer(shared_platform),
        )

        assert response.status_code == 422
        assert response.json()["code"] == "amount_out_of_range"

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"from": "USD", "to": "EUR", "amount": 1, "amount": 2}',
            b'{"from": "USD", "to": "EUR", "amount": NaN}',
            b'{"from": "USD\\u0000", "to": "EUR", "amount": 1}',
            b'{"from": "\\ud800", "to": "EUR", "amount": 1}',
            b"[" * 100 + b"]" * 100,
            b"\xff\xfe",
        ],
    )
    async def test_malformed_json_is_400(
        self, shared_platform: Platform, shared_client: httpx.AsyncClient, raw: bytes
    ) -> None:
        response = await shared_client.post(
            "/v1/forex/quotes",
            content=raw,
            headers=bearer(shared_platform) | {"content-type": "application/json"},
        )

        assert response.status_code == 400, response.text

    async def test_an_oversized_body_is_413(
        self, shared_platform: Platform, shared_client: httpx.AsyncClient
    ) -> None:
        response = await shared_client.post(
            "/v1/forex/quotes",
            content=b'{"from": "' + b"U" * (2 * 1024 * 1024) + b'"}',
            headers=bearer(shared_platform) | {"content-type": "application/json"},
        )

        assert response.status_code == 413


class TestPaths:
    @pytest.mark.parametrize(
        "quote_id", ["x" * 65, "qte_' OR 1=1 --", "..%2F..%2Fetc", "qte_%00", "%F0%9F%92%B8"]
    )
    async def test_odd_quote_ids_are_refused(
        self, shared_platform: Platform, shared_client: httpx.AsyncClient, quote_id: str
    ) -> None:
        response = await shared_client.get(
            f"/v1/forex/quotes/{quote_id}", headers=bearer(shared_platform)
        )

        assert response.status_code in (400, 404, 422), response.text
        assert response.headers["content-type"] == "application/problem+json"

    @pytest.mark.parametrize("base", ["usd", "US", "USDD", "", "%00"])
    async def test_odd_bases_are_refused(self, shared_client: httpx.AsyncClient, base: str) -> None:
        response = await shared_client.get(f"/v1/forex/rates?base={base}")

        assert response.status_code in (400, 422), response.text
