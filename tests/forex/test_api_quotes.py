"""Conversions and quotes through the gateway: rounding, markup, expiry, one use only,
who may see and use a quote (real identity tokens for customers), events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from paymesh.forex import pricing
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.forex.factories import (
    advance_clock,
    bearer,
    outbox_events,
    quote,
    rate_book,
    service_caller,
)


async def mid(http: httpx.AsyncClient, pair: str) -> Decimal:
    response = await http.get(f"/v1/forex/rates/{pair}")
    return Decimal(response.json()["rate"])


class TestConvert:
    async def test_at_the_mid_rate_rounded_down(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        rate = await mid(client, "USDJPY")

        response = await client.post(
            "/v1/forex/convert",
            json={"from": "USD", "to": "JPY", "amount": 12_345},
            headers=bearer(forex_platform),
        )

        assert response.status_code == 200, response.text
        body = response.json()
        exact = Decimal(12_345) / 100 * rate
        assert body["amount"] == int(exact)  # rounded down, never up
        assert body["amount"] < exact
        assert (body["from"], body["to"], body["source_amount"]) == ("USD", "JPY", 12_345)
        assert body["rate"] == str(rate)
        assert body["source"] == "ecb"

    async def test_to_a_three_decimal_currency_uses_its_minor_unit(
        self, make_platform: Callable[..., Any], settings: Any
    ) -> None:
        from tests.forex.conftest import with_forex

        tuned = with_forex(settings, provider="static", static_rates={"KWD": "0.3311"})
        platform: Platform = await make_platform(["forex"], settings_override=tuned)
        async with http_client(platform) as http:
            response = await http.post(
                "/v1/forex/convert",
                json={"from": "EUR", "to": "KWD", "amount": 1_001},  # 10.01 EUR
                headers=bearer(platform),
            )

        assert response.json()["amount"] == 3_314  # 3.314311 KWD -> 3.314 (fils)

    async def test_needs_a_token(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/forex/convert", json={"from": "USD", "to": "JPY", "amount": 100}
        )

        assert response.status_code == 401


class TestCreateQuote:
    async def test_sell_rounds_what_the_customer_receives_down(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        rate = await mid(client, "USDEUR")

        body = await quote(client, bearer(forex_platform), amount=10_000, side="sell")

        customer_rate = pricing.customer_rate(rate, 50)
        assert body["mid_rate"] == str(rate)
        assert body["customer_rate"] == str(customer_rate)
        assert customer_rate < rate
        assert body["from_amount"] == 10_000
        assert body["to_amount"] == int(Decimal(100) * customer_rate * 100)
        assert (body["status"], body["owner"], body["side"]) == ("open", "alice", "sell")
        assert body["markup_bps"] == 50
        assert body["id"].startswith("qte_")

    async def test_buy_rounds_what_the_customer_pays_up(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        body = await quote(client, bearer(forex_platform), amount=10_000, side="buy")

        rate = Decimal(body["customer_rate"])
        assert body["to_amount"] == 10_000
        exact = Decimal(100) / rate * 100
        assert body["from_amount"] == int(exact) + 1 > exact

    async def test_expires_after_the_configured_time(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        import datetime as dt

        body = await quote(client, bearer(forex_platform))

        created = dt.datetime.fromisoformat(body["created_at"])
        expires = dt.datetime.fromisoformat(body["expires_at"])
        assert expires - created == dt.timedelta(seconds=30)

    async def test_writes_a_created_event(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        body = await quote(client, bearer(forex_platform))

        events = await outbox_events(forex_platform, "forex.quote.created")

        assert len(events) == 1
        assert events[0]["subject"] == body["id"]
        assert events[0]["data"]["to_amount"] == body["to_amount"]
        assert events[0]["source"] == "/paymesh/forex"

    async def test_idempotency_key_replays_the_same_quote(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        headers = bearer(forex_platform) | {"idempotency-key": "quote-1"}
        payload = {"from": "USD", "to": "EUR", "amount": 5_000}

        first = await client.post("/v1/forex/quotes", json=payload, headers=headers)
        second = await client.post("/v1/forex/quotes", json=payload, headers=headers)
        other = await client.post(
            "/v1/forex/quotes", json=payload | {"amount": 5_001}, headers=headers
        )

        assert first.status_code == second.status_code == 201
        assert second.json()["id"] == first.json()["id"]
        assert second.headers["idempotent-replayed"] == "true"
        assert other.status_code == 422
        assert len(await outbox_events(forex_platform, "forex.quote.created")) == 1

    async def test_an_auditor_may_not_quote(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/v1/forex/quotes",
            json={"from": "USD", "to": "EUR", "amount": 100},
            headers=bearer(forex_platform, "audrey", "auditor"),
        )

        assert response.status_code == 403


class TestConsumeQuote:
    async def test_once(self, forex_platform: Platform, client: httpx.AsyncClient) -> None:
        body = await quote(client, bearer(forex_platform))
        path = f"/v1/forex/quotes/{body['id']}/consume"
        service = service_caller(forex_platform)

        first = await client.post(path, json={"reference": "pay_1"}, headers=service)
        again = await client.post(path, json={"reference": "pay_2"}, headers=service)
        same = await client.post(path, json={"reference": "pay_1"}, headers=service)

        assert first.status_code == 200, first.text
        assert first.json()["status"] == "consumed"
        assert first.json()["consumed_reference"] == "pay_1"
        assert again.status_code == 409
        assert again.json()["code"] == "quote_already_consumed"
        assert same.status_code == 200  # the payment that used it, retrying
        events = await outbox_events(forex_platform, "forex.quote.consumed")
        assert [event["subject"] for event in events] == [body["id"]]

    async def test_an_expired_quote_is_refused(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        body = await quote(client, bearer(forex_platform))
        advance_clock(forex_platform, 31)

        response = await client.post(
            f"/v1/forex/quotes/{body['id']}/consume", headers=service_caller(forex_platform)
        )
        read = await client.get(f"/v1/forex/quotes/{body['id']}", headers=bearer(forex_platform))

        assert response.status_code == 409
        assert response.json()["code"] == "quote_expired"
        assert read.json()["status"] == "expired"
        assert await outbox_events(forex_platform, "forex.quote.consumed") == []

    async def test_an_unknown_quote_is_404(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/v1/forex/quotes/qte_nope/consume", headers=service_caller(forex_platform)
        )

        assert response.status_code == 404
        assert response.json()["code"] == "quote_not_found"

    @pytest.mark.parametrize("roles", [("customer",), ("admin",), ("finance",)])
    async def test_only_services_consume(
        self, forex_platform: Platform, client: httpx.AsyncClient, roles: tuple[str, ...]
    ) -> None:
        body = await quote(client, bearer(forex_platform))

        response = await client.post(
            f"/v1/forex/quotes/{body['id']}/consume",
            headers=bearer(forex_platform, "alice", *roles),
        )

        assert response.status_code == 403
        read = await client.get(f"/v1/forex/quotes/{body['id']}", headers=bearer(forex_platform))
        assert read.json()["status"] == "open"

    async def test_concurrent_consumers_exactly_one_wins(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        body = await quote(client, bearer(forex_platform))
        path = f"/v1/forex/quotes/{body['id']}/consume"
        service = service_caller(forex_platform)

        # Each request is its own transaction on its own pooled connection.
        answers = await asyncio.gather(
            *(client.post(path, json={"reference": f"pay_{n}"}, headers=service) for n in range(12))
        )

        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] + [409] * 11, [answer.text for answer in answers]
        assert len(await outbox_events(forex_platform, "forex.quote.consumed")) == 1


@pytest.mark.postgres_only
class TestConsumeAcrossProcesses:
    async def test_two_platforms_on_one_database_one_winner(
        self, make_platform: Callable[..., Any], settings: Any
    ) -> None:
        """Two platforms (as two processes would) with their own connection pools race to
        consume the same quotes on one PostgreSQL database."""
        first: Platform = await make_platform(["forex"], run_workers=False)
        second = Platform(settings, ["forex"], run_workers=False)
        await second.start()
        try:
            async with http_client(first) as one, http_client(second) as two:
                for _ in range(5):
                    body = await quote(one, bearer(first))
                    path = f"/v1/forex/quotes/{body['id']}/consume"
                    # Every consumer its own reference: a reference that already used
                    # the quote would get it back (a retry), not a refusal.
                    answers = await asyncio.gather(
                        *(
                            http.post(path, json={"reference": f"pay_{n}_{side}"}, headers=headers)
                            for n in range(6)
                            for side, http, headers in (
                                ("a", one, service_caller(first)),
                                ("b", two, service_caller(second)),
                            )
                        )
                    )
                    assert sorted(answer.status_code for answer in answers) == [200] + [409] * 11
        finally:
            await second.stop()


class TestStaleRates:
    async def test_quotes_and_conversions_refuse_old_rates_but_rates_still_publish(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        book = rate_book(forex_platform)
        advance_clock(forex_platform, 6 * 3600 + 1)  # no refresh for longer than allowed

        quoted = await client.post(
            "/v1/forex/quotes",
            json={"from": "USD", "to": "EUR", "amount": 100},
            headers=bearer(forex_platform),
        )
        converted = await client.post(
            "/v1/forex/convert",
            json={"from": "USD", "to": "EUR", "amount": 100},
            headers=bearer(forex_platform),
        )
        published = await client.get("/v1/forex/rates/EURUSD")

        assert quoted.status_code == converted.status_code == 503
        assert quoted.json()["code"] == converted.json()["code"] == "rates_stale"
        assert "refreshed_at" in quoted.json()
        assert published.status_code == 200  # with its date, as a rate board shows it
        await book.refresh()  # the provider answers again
        again = await client.post(
            "/v1/forex/convert",
            json={"from": "USD", "to": "EUR", "amount": 100},
            headers=bearer(forex_platform),
        )
        assert again.status_code == 200

    async def test_refusing_stale_rates_does_not_take_the_rate_board_down(
        self, forex_platform: Platform, client: httpx.AsyncClient
    ) -> None:
        advance_clock(forex_platform, 6 * 3600 + 1)
        for _ in range(6):
            await client.post(
                "/v1/forex/convert",
                json={"from": "USD", "to": "EUR", "amount": 100},
                headers=bearer(forex_platform),
            )

        published = await client.get("/v1/forex/rates/EURUSD")

        assert published.status_code == 200, published.text
