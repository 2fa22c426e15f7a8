"""`HttpForexClient`, the way other services call forex (in process, real HTTP semantics,
service tokens from the directory)."""

from __future__ import annotations

import datetime as dt

import pytest

from paymesh.forex.client import ForexClient, HttpForexClient
from paymesh.kernel.errors import RemoteServiceError
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.forex.factories import bearer, quote


class TestHttpForexClient:
    async def test_rate_quote_and_consume(self, forex_platform: Platform) -> None:
        async with http_client(forex_platform) as http:
            created = await quote(http, bearer(forex_platform))
        forex: ForexClient = HttpForexClient(forex_platform.directory.client("forex", "payments"))

        rate = await forex.get_rate("EUR", "USD", dt.date(1999, 1, 4))
        read = await forex.get_quote(created["id"])
        used = await forex.consume_quote(created["id"], "pay_1")
        again = await forex.consume_quote(created["id"], "pay_1")  # a retry of the payment

        assert (rate.rate, rate.date) == ("1.1789", dt.date(1999, 1, 4))
        assert read.to_amount == created["to_amount"]
        assert read.from_currency == "USD"
        assert used.status == again.status == "consumed"
        with pytest.raises(RemoteServiceError) as refused:
            await forex.consume_quote(created["id"], "pay_2")
        assert refused.value.remote_code == "quote_already_consumed"
