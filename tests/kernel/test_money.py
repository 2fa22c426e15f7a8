"""Money: integer minor units, ISO 4217 exponents, exact parsing, decimal rates, no floats."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from paymesh.kernel.money import (
    MAX_AMOUNT_MINOR,
    AmountMinor,
    CurrencyCode,
    CurrencyMismatch,
    InvalidAmount,
    InvalidRate,
    Money,
    RateDecimal,
    UnknownCurrency,
    convert,
    currencies,
    get_currency,
    parse_rate,
)


class Payment(BaseModel):
    amount: AmountMinor
    currency: CurrencyCode


class Quote(BaseModel):
    rate: RateDecimal


class TestCurrencyExponent:
    @pytest.mark.parametrize(
        ("code", "exponent"), [("JPY", 0), ("USD", 2), ("EUR", 2), ("KWD", 3), ("BHD", 3)]
    )
    def test_exponent_comes_from_iso_4217(self, code: str, exponent: int) -> None:
        assert get_currency(code).exponent == exponent

    def test_minor_units_per_major(self) -> None:
        assert get_currency("JPY").minor_units_per_major == 1
        assert get_currency("USD").minor_units_per_major == 100
        assert get_currency("KWD").minor_units_per_major == 1000

    @pytest.mark.parametrize("code", ["XXY", "usd", "", "US", "XAU"])
    def test_an_unknown_currency_is_refused(self, code: str) -> None:
        with pytest.raises(UnknownCurrency):
            get_currency(code)

    def test_the_table_lists_the_common_currencies(self) -> None:
        codes = {currency.code for currency in currencies()}
        assert {"USD", "EUR", "GBP", "JPY", "KWD", "BDT", "INR"} <= codes


class TestParseMoney:
    @pytest.mark.parametrize(
        ("text", "currency", "minor"),
        [
            ("12.34", "USD", 1234),
            ("12.3", "USD", 1230),
            ("12", "USD", 1200),
            ("0.01", "USD", 1),
            ("1500", "JPY", 1500),
            ("1.250", "KWD", 1250),
            ("0.001", "KWD", 1),
            ("-5.10", "EUR", -510),
            (" 7.00 ", "USD", 700),
            ("92233720368547758.07", "USD", MAX_AMOUNT_MINOR),
        ],
    )
    def test_parses_exactly(self, text: str, currency: str, minor: int) -> None:
        assert Money.parse(text, currency) == Money(minor, currency)

    @pytest.mark.parametrize(
        ("text", "currency"),
        [("12.345", "USD"), ("1.5", "JPY"), ("0.0001", "KWD"), ("0.009", "USD")],
    )
    def test_refuses_more_decimals_than_the_currency_has(self, text: str, currency: str) -> None:
        with pytest.raises(InvalidAmount, match="decimal places"):
            Money.parse(text, currency)

    @pytest.mark.parametrize("text", ["abc", "", "1,50", "NaN", "Infinity", "1e400x"])
    def test_refuses_what_is_not_a_finite_decimal(self, text: str) -> None:
        with pytest.raises(InvalidAmount):
            Money.parse(text, "USD")

    def test_refuses_an_unknown_currency(self) -> None:
        with pytest.raises(UnknownCurrency):
            Money.parse("1.00", "XXY")


class TestFormatMoney:
    @pytest.mark.parametrize(
        ("money", "text"),
        [
            (Money(1234, "USD"), "12.34 USD"),
            (Money(5, "USD"), "0.05 USD"),
            (Money(1500, "JPY"), "1500 JPY"),
            (Money(1250, "KWD"), "1.250 KWD"),
            (Money(-510, "EUR"), "-5.10 EUR"),
            (Money(0, "KWD"), "0.000 KWD"),
        ],
    )
    def test_formats_with_the_currency_exponent(self, money: Money, text: str) -> None:
        assert money.format() == text

    @given(
        amount=st.integers(min_value=-MAX_AMOUNT_MINOR, max_value=MAX_AMOUNT_MINOR),
        currency=st.sampled_from([currency.code for currency in currencies()]),
    )
    def test_parse_of_format_is_the_same_money(self, amount: int, currency: str) -> None:
        money = Money(amount, currency)
        number, code = money.format().split(" ")

        assert code == currency
        assert Money.parse(number, code) == money


class TestMoneyArithmetic:
    def test_same_currency_adds_and_subtracts(self) -> None:
        assert Money(150, "USD") + Money(250, "USD") == Money(400, "USD")
        assert Money(150, "USD") - Money(250, "USD") == Money(-100, "USD")
        assert -Money(150, "USD") == Money(-150, "USD")

    def test_different_currencies_do_not_mix(self) -> None:
        with pytest.raises(CurrencyMismatch):
            Money(150, "USD") + Money(150, "EUR")

    def test_a_float_amount_is_refused(self) -> None:
        with pytest.raises(InvalidAmount):
            Money(1.5, "USD")  # type: ignore[arg-type]

    def test_a_bool_amount_is_refused(self) -> None:
        with pytest.raises(InvalidAmount):
            Money(True, "USD")


class TestConvert:
    def test_converts_between_exponents_with_a_decimal_rate(self) -> None:
        # 100.00 USD at 151.237 JPY per USD = 15123.7 JPY, rounded to 15124 yen.
        assert convert(10_000, "USD", "JPY", Decimal("151.237")) == 15_124
        # 100.00 USD at 0.30712 KWD per USD = 30.712 KWD = 30712 fils.
        assert convert(10_000, "USD", "KWD", Decimal("0.30712")) == 30_712
        # 1500 JPY at 0.0066 USD per JPY = 9.90 USD.
        assert convert(1_500, "JPY", "USD", Decimal("0.0066")) == 990

    def test_rounds_half_to_even_by_default(self) -> None:
        assert convert(1, "USD", "EUR", Decimal("0.5")) == 0  # 0.5 cent -> 0
        assert convert(3, "USD", "EUR", Decimal("0.5")) == 2  # 1.5 cents -> 2
        assert convert(5, "USD", "EUR", Decimal("0.5")) == 2  # 2.5 cents -> 2

    def test_takes_another_rounding_when_asked(self) -> None:
        assert convert(1, "USD", "EUR", Decimal("0.5"), rounding="ROUND_UP") == 1

    def test_is_exact_where_a_float_would_not_be(self) -> None:
        # 0.1 * 3 is 0.30000000000000004 in binary floating point.
        assert convert(300, "USD", "EUR", Decimal("0.1")) == 30

    @pytest.mark.parametrize("rate", [1.1, Decimal(0), Decimal(-1), Decimal("NaN"), "abc"])
    def test_refuses_a_rate_that_is_not_a_positive_decimal(self, rate: object) -> None:
        with pytest.raises(InvalidRate):
            convert(100, "USD", "EUR", rate)  # type: ignore[arg-type]

    def test_parse_rate_accepts_a_decimal_string(self) -> None:
        assert parse_rate("1.0842") == Decimal("1.0842")


class TestPydanticMoneyTypes:
    def test_amount_minor_accepts_an_integer(self) -> None:
        assert Payment(amount=1250, currency="USD").amount == 1250

    @pytest.mark.parametrize("amount", [12.0, 1.5, "12", 0, -1, MAX_AMOUNT_MINOR + 1, True])
    def test_amount_minor_refuses_floats_strings_and_non_positive(self, amount: object) -> None:
        with pytest.raises(ValidationError):
            Payment(amount=amount, currency="USD")  # type: ignore[arg-type]

    @pytest.mark.parametrize("currency", ["XXY", "usd", "US", "USDX"])
    def test_currency_code_refuses_unknown_codes(self, currency: str) -> None:
        with pytest.raises(ValidationError):
            Payment(amount=1, currency=currency)

    def test_rate_decimal_accepts_a_string_and_serialises_as_one(self) -> None:
        quote = Quote(rate="1.0842")  # type: ignore[arg-type]

        assert quote.rate == Decimal("1.0842")
        assert quote.model_dump(mode="json") == {"rate": "1.0842"}
        assert quote.model_dump_json() == '{"rate":"1.0842"}'

    @pytest.mark.parametrize("rate", [1.0842, 1.0, "0", "-1.2", "NaN"])
    def test_rate_decimal_refuses_floats_and_non_positive(self, rate: object) -> None:
        with pytest.raises(ValidationError):
            Quote(rate=rate)  # type: ignore[arg-type]

    def test_rate_decimal_refuses_a_float_in_json(self) -> None:
        with pytest.raises(ValidationError):
            Quote.model_validate_json('{"rate": 1.0842}')
