"""The OANDA-style provider against its simulator over real HTTP: a good key, a wrong key,
the simulator down; and the platform pricing on it, going stale when it stops answering."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from paymesh.forex.errors import DateOutOfRange, ProviderError
from paymesh.forex.oanda import SPOT_PATH, OandaRates
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.forex.conftest import with_forex
from tests.forex.factories import advance_clock, bearer
from tests.forex.simulator import KEY, serving, unused_port

RATES = {"USD": "1.0842", "JPY": "162.35", "GBP": "0.8526"}


class TestOandaRates:
    async def test_reads_the_midpoints_as_decimals(self) -> None:
        async with serving(RATES) as (url, simulator):
            provider = OandaRates(url, KEY)
            table = await provider.table()
            await provider.aclose()

        assert table.source == "oanda"
        assert table.per_eur == {code: Decimal(rate) for code, rate in RATES.items()}
        assert table.day == dt.datetime.now(dt.UTC).date()
        assert simulator.requests == 1

    async def test_a_past_day_from_the_ecb_backed_simulator(self) -> None:
        async with serving() as (url, _simulator):
            provider = OandaRates(url, KEY)
            table = await provider.table(dt.date(2024, 6, 1))
            with pytest.raises(DateOutOfRange):
                await provider.table(dt.date(1990, 1, 1))
            await provider.aclose()

        assert table.day == dt.date(2024, 5, 31)
        assert table.per_eur["USD"] == Decimal("1.0852")

    async def test_the_simulator_refuses_a_wrong_key(self) -> None:
        async with serving(RATES) as (url, _simulator):
            provider = OandaRates(url, "not-the-key")
            with pytest.raises(ProviderError, match="401"):
                await provider.table()
            await provider.aclose()
            async with httpx.AsyncClient(base_url=url) as http:
                anonymous = await http.get(SPOT_PATH, params={"base": "EUR"})

        assert anonymous.status_code == 401

    async def test_down_is_a_provider_error(self) -> None:
        provider = OandaRates(f"http://127.0.0.1:{unused_port()}", KEY, timeout_seconds=2)

        with pytest.raises(ProviderError, match="ConnectError"):
            await provider.table()
        await provider.aclose()

    async def test_nonsense_is_a_provider_error(self) -> None:
        def garbage(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=b'{"quotes": [{"midpoint": 1e999}]}')

        provider = OandaRates("http://oanda.test", KEY, transport=httpx.MockTransport(garbage))

        with pytest.raises(ProviderError, match="unreadable"):
            await provider.table()


class TestPlatformOnOanda:
    async def test_prices_on_it_and_goes_stale_when_it_stops_answering(
        self, make_platform: Callable[..., Any], settings: Any
    ) -> None:
        async with serving(RATES) as (url, _simulator):
            tuned = with_forex(
                settings,
                provider="oanda",
                oanda_base_url=url,
                oanda_api_key=KEY,
                rates_max_age_seconds=60,
            )
            platform: Platform = await make_platform(
                ["forex"], run_workers=False, settings_override=tuned
            )
            async with http_client(platform) as http:
                rate = (await http.get("/v1/forex/rates/USDGBP")).json()
                quoted = await http.post(
                    "/v1/forex/quotes",
                    json={"from": "USD", "to": "GBP", "amount": 10_000},
                    headers=bearer(platform),
                )
        # The simulator is gone: the job's refresh fails, the held rates age.
        async with http_client(platform) as http:
            job = platform.runtimes["forex"].scheduler.jobs["refresh_rates"]
            with pytest.raises(ProviderError):
                await job.run()
            still = await http.post(
                "/v1/forex/convert",
                json={"from": "USD", "to": "GBP", "amount": 100},
                headers=bearer(platform),
            )
            advance_clock(platform, 61)
            stale = await http.post(
                "/v1/forex/quotes",
                json={"from": "USD", "to": "GBP", "amount": 100},
                headers=bearer(platform),
            )

        assert rate["source"] == "oanda"
        assert rate["rate"] == "0.786386275594"  # 0.8526 / 1.0842 = 0.7863862755949..., cut down
        assert quoted.status_code == 201
        assert quoted.json()["source"] == "oanda"
        assert still.status_code == 200  # within the allowed age
        assert stale.status_code == 503
        assert stale.json()["code"] == "rates_stale"

    async def test_a_wrong_key_from_the_start_is_503_rates_unavailable(
        self, make_platform: Callable[..., Any], settings: Any
    ) -> None:
        async with serving(RATES) as (url, _simulator):
            tuned = with_forex(
                settings, provider="oanda", oanda_base_url=url, oanda_api_key="wrong"
            )
            platform: Platform = await make_platform(
                ["forex"], run_workers=False, settings_override=tuned
            )
            async with http_client(platform) as http:
                rate = await http.get("/v1/forex/rates/EURUSD")
                quoted = await http.post(
                    "/v1/forex/quotes",
                    json={"from": "USD", "to": "GBP", "amount": 100},
                    headers=bearer(platform),
                )

        assert rate.status_code == quoted.status_code == 503
        assert rate.json()["code"] == quoted.json()["code"] == "rates_unavailable"
