"""The rounding rule, directly on the pure functions: toward the platform, always."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymesh.forex import pricing
from paymesh.forex.errors import AmountOutOfRange, AmountTooSmall, SameCurrency
from paymesh.forex.providers import ecb_history
from paymesh.kernel.money import MAX_AMOUNT_MINOR

HISTORY = ecb_history()
PER_EUR = st.sampled_from(range(len(HISTORY.days))).map(lambda index: HISTORY.tables[index])
AMOUNTS = st.integers(min_value=1, max_value=10**15)


def rate(table: dict[str, Decimal], base: str, quote: str) -> Decimal:
    per_eur = {**table, "EUR": Decimal(1)}
    return pricing.cross_rate(per_eur[base], per_eur[quote])


class TestTruncate:
    def test_cuts_down_to_twelve_significant_digits(self) -> None:
        assert pricing.truncate(Decimal("0.92148912642830814596")) == Decimal("0.921489126428")
        assert pricing.truncate(Decimal("157.13232583855510")) == Decimal("157.132325838")

    def test_never_rounds_up(self) -> None:
        assert pricing.truncate(Decimal("1.9999999999999999")) == Decimal("1.99999999999")

    def test_rate_text_has_no_exponent(self) -> None:
        assert pricing.rate_text(Decimal("1.5E+2")) == "150"
        assert pricing.rate_text(Decimal("0.000001230")) == "0.00000123"


class TestReceived:
    def test_rounds_down_to_the_targets_minor_unit(self) -> None:
        # 100.00 USD at 157.132325838 JPY = 15713.2325838 -> 15713 JPY
        assert pricing.received(10_000, "USD", "JPY", Decimal("157.132325838")) == 15_713
        # 100 JPY at 0.00636 USD = 0.636 USD -> 0.63 USD (63 cents), not 64
        assert pricing.received(100, "JPY", "USD", Decimal("0.00636")) == 63

    def test_three_decimal_currencies(self) -> None:
        # 10.00 EUR at 0.3311 KWD = 3.311 KWD = 3311 fils
        assert pricing.received(1_000, "EUR", "KWD", Decimal("0.3311")) == 3_311

    def test_less_than_a_minor_unit_is_refused(self) -> None:
        with pytest.raises(AmountTooSmall):
            pricing.received(1, "JPY", "USD", Decimal("0.0063"))

    def test_beyond_int64_is_refused(self) -> None:
        with pytest.raises(AmountOutOfRange):
            pricing.received(MAX_AMOUNT_MINOR, "USD", "JPY", Decimal("157"))

    def test_the_same_currency_is_refused(self) -> None:
        with pytest.raises(SameCurrency):
            pricing.received(100, "USD", "USD", Decimal(1))


class TestPaid:
    def test_rounds_up(self) -> None:
        # To receive 100.00 EUR at 0.921489126428 EUR per USD (1 / 1.0852, cut down) costs
        # 108.520000000003... USD: rounded up, 108.53. The cut-down rate and the rounded-up
        # amount both lean toward the platform, by less than a cent together.
        assert pricing.paid(10_000, "USD", "EUR", Decimal("0.921489126428")) == 10_853
        assert pricing.paid(10_000, "USD", "EUR", Decimal("0.92")) == 10_870  # 108.6956...
        # to receive 1 JPY at 157.13 JPY per USD costs 0.0063... USD -> 1 cent
        assert pricing.paid(1, "USD", "JPY", Decimal("157.13")) == 1

    @given(amount=AMOUNTS, table=PER_EUR)
    @settings(max_examples=200, deadline=None)
    def test_what_is_paid_buys_at_least_what_was_asked(
        self, amount: int, table: dict[str, Decimal]
    ) -> None:
        quote_rate = pricing.customer_rate(rate(table, "GBP", "USD"), 50)
        cost = pricing.paid(amount, "GBP", "USD", quote_rate)
        assert pricing.received(cost, "GBP", "USD", quote_rate) >= amount
        # ... and one minor unit less would not
        if cost > 1:
            assert pricing.received(cost - 1, "GBP", "USD", quote_rate) < amount + 2


class TestCustomerRate:
    def test_less_the_markup(self) -> None:
        assert pricing.customer_rate(Decimal("1.0852"), 50) == Decimal("1.079774")
        assert pricing.customer_rate(Decimal("1.0852"), 0) == Decimal("1.0852")


class TestRoundTrip:
    @given(amount=AMOUNTS, table=PER_EUR)
    @settings(max_examples=300, deadline=None)
    def test_usd_jpy_usd_never_yields_more(self, amount: int, table: dict[str, Decimal]) -> None:
        there, back = rate(table, "USD", "JPY"), rate(table, "JPY", "USD")
        try:
            yen = pricing.received(amount, "USD", "JPY", there)
            dollars = pricing.received(yen, "JPY", "USD", back)
        except AmountTooSmall:
            return  # too little to come back: nothing to compare
        assert dollars <= amount

    @given(
        amount=st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR // 1000),
        table=PER_EUR,
        pair=st.sampled_from([("EUR", "USD"), ("GBP", "CHF"), ("JPY", "KRW"), ("USD", "HUF")]),
        markup_bps=st.integers(min_value=0, max_value=500),
    )
    @settings(max_examples=300, deadline=None)
    def test_any_pair_and_markup_never_yields_more(
        self,
        amount: int,
        table: dict[str, Decimal],
        pair: tuple[str, str],
        markup_bps: int,
    ) -> None:
        source, target = pair
        if source not in {*table, "EUR"} or target not in {*table, "EUR"}:
            return
        there = pricing.customer_rate(rate(table, source, target), markup_bps)
        back = pricing.customer_rate(rate(table, target, source), markup_bps)
        try:
            converted = pricing.received(amount, source, target, there)
            returned = pricing.received(converted, target, source, back)
        except (AmountTooSmall, AmountOutOfRange):
            return
        assert returned <= amount
