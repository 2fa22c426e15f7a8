"""Fees as data, on the pure functions: which rule applies, what it charges, what a reversal
gives back. Integer minor units throughout; every rounding goes toward the platform."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from paymesh.kernel.errors import PaymeshError
from paymesh.kernel.money import MAX_AMOUNT_MINOR
from paymesh.payments.pricing import (
    DEFAULT_PRICING,
    ZERO_FEE,
    AmountOutOfRange,
    FeeQuote,
    FeeRule,
    PricingError,
    PricingTable,
    quote_fee,
    refund_fee,
)


def rule(**fields: Any) -> FeeRule:
    return FeeRule.model_validate({"type": "p2p", "currency": "USD", **fields})


def table(*rules: FeeRule) -> PricingTable:
    return PricingTable(rules=rules)


def fee_of(pricing: PricingTable | FeeRule, amount: int, **fields: Any) -> FeeQuote:
    if isinstance(pricing, FeeRule):
        pricing = table(pricing)
    arguments: dict[str, Any] = {"type": "p2p", "currency": "USD", "kyc_level": "none"}
    arguments.update(fields)
    return quote_fee(pricing, amount=amount, **arguments)


class TestFeeRule:
    def test_defaults_charge_nothing_and_refund_pro_rata(self) -> None:
        plain = FeeRule(type="*", currency="*")
        assert (plain.basis_points, plain.fixed, plain.minimum, plain.maximum) == (0, 0, 0, None)
        assert plain.free_for_levels == ()
        assert plain.refund_on_reversal == "pro_rata"

    def test_is_frozen(self) -> None:
        with pytest.raises(ValidationError):
            rule().basis_points = 10  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"fixed": -1}, "greater than or equal to 0"),
            ({"minimum": -1}, "greater than or equal to 0"),
            ({"maximum": -1}, "greater than or equal to 0"),
            ({"basis_points": -1}, "greater than or equal to 0"),
            ({"basis_points": 10_001}, "less than or equal to 10000"),
            ({"fixed": MAX_AMOUNT_MINOR + 1}, "less than or equal to"),
            ({"minimum": 50, "maximum": 49}, "maximum must not be less than minimum"),
            ({"fixed": 60, "maximum": 50}, "fixed exceeds maximum"),
            ({"type": "checkout"}, "type"),
            ({"type": ""}, "type"),
            ({"currency": "usd"}, "currency"),
            ({"currency": "XYZ"}, "not an ISO 4217 currency code"),
            ({"currency": "**"}, "currency"),
            ({"free_for_levels": ["gold"]}, "free_for_levels"),
            ({"free_for_levels": ["basic", "basic"]}, "lists a level twice"),
            ({"refund_on_reversal": "always"}, "refund_on_reversal"),
            ({"basis_points": 2.5}, "basis_points"),
            ({"fixed": "30"}, "fixed"),
            ({"fixed": True}, "fixed"),
            ({"surcharge": 1}, "Extra inputs are not permitted"),
        ],
    )
    def test_bad_input_is_refused(self, fields: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            rule(**fields)

    @pytest.mark.parametrize("fields", [{"fixed": 30}, {"minimum": 1}, {"maximum": 500}])
    def test_amounts_need_a_currency(self, fields: dict[str, Any]) -> None:
        # 30 minor units are 0.30 USD but 30 JPY: an amount means nothing without a currency.
        with pytest.raises(ValueError, match="carries only basis points"):
            rule(currency="*", **fields)
        assert rule(currency="*", basis_points=30).basis_points == 30

    def test_maximum_may_equal_minimum(self) -> None:
        flat = rule(minimum=99, maximum=99, basis_points=10_000)
        assert fee_of(flat, 1).fee == 99
        assert fee_of(flat, 10**9).fee == 99


class TestPricingTable:
    RULES = (
        FeeRule(type="*", currency="*", basis_points=1),
        FeeRule(type="*", currency="EUR", basis_points=2),
        FeeRule(type="p2p", currency="*", basis_points=3),
        FeeRule(type="p2p", currency="EUR", basis_points=4),
    )

    @pytest.mark.parametrize(
        ("payment_type", "currency", "expected_bps"),
        [
            ("p2p", "EUR", 4),  # exact type and currency
            ("p2p", "USD", 3),  # the type in any currency
            ("cross_currency", "EUR", 2),  # any type in the currency
            ("cross_currency", "USD", 1),  # anything
        ],
    )
    def test_the_most_specific_rule_wins(
        self, payment_type: str, currency: str, expected_bps: int
    ) -> None:
        for rules in (self.RULES, tuple(reversed(self.RULES))):  # declaration order is moot
            found = table(*rules).rule_for(payment_type, currency)
            assert found.basis_points == expected_bps

    def test_a_type_wildcard_outranks_a_currency_wildcard(self) -> None:
        pricing = table(self.RULES[1], self.RULES[2])
        assert pricing.rule_for("p2p", "EUR").basis_points == 3

    def test_nothing_matching_is_a_zero_fee(self) -> None:
        pricing = table(rule(type="p2p", currency="EUR", basis_points=100, minimum=5))
        assert pricing.rule_for("p2p", "USD") is ZERO_FEE
        assert pricing.rule_for("cross_currency", "EUR") is ZERO_FEE
        quote = fee_of(pricing, 10_000, currency="USD")
        assert (quote.fee, quote.total, quote.rule) == (0, 10_000, ZERO_FEE)
        assert ZERO_FEE.refund_on_reversal == "none"

    def test_an_empty_table_charges_nothing(self) -> None:
        assert fee_of(PricingTable(), 500).fee == 0

    def test_two_rules_for_the_same_key_are_refused(self) -> None:
        with pytest.raises(ValueError, match="two rules for type 'p2p' and currency 'USD'"):
            table(rule(basis_points=1), rule(basis_points=2))
        with pytest.raises(ValueError, match="two rules"):
            table(FeeRule(type="*", currency="*"), FeeRule(type="*", currency="*"))

    def test_loads_from_json(self) -> None:
        document = json.loads(
            '{"rules": [{"type": "cross_currency", "currency": "JPY", "basis_points": 40,'
            ' "fixed": 10, "minimum": 20, "maximum": 5000, "free_for_levels": ["full"],'
            ' "refund_on_reversal": "none"}]}'
        )
        pricing = PricingTable.model_validate(document)
        loaded = pricing.rule_for("cross_currency", "JPY")
        assert loaded.fixed == 10 and loaded.free_for_levels == ("full",)
        # and round-trips: what is stored with a payment can be read back
        assert PricingTable.model_validate_json(pricing.model_dump_json()) == pricing

    def test_bad_documents_are_refused(self) -> None:
        with pytest.raises(ValueError, match="Extra inputs"):
            PricingTable.model_validate({"rules": [], "version": 2})
        with pytest.raises(ValueError, match="at most 1000"):
            PricingTable.model_validate({"rules": [{"type": "p2p", "currency": "USD"}] * 1001})

    @pytest.mark.parametrize(
        ("payment_type", "currency"),
        [("*", "USD"), ("checkout", "USD"), ("p2p", "*"), ("p2p", "usd"), ("p2p", "XYZ")],
    )
    def test_asking_for_a_wildcard_or_unknown_is_refused(
        self, payment_type: str, currency: str
    ) -> None:
        with pytest.raises(PricingError):
            DEFAULT_PRICING.rule_for(payment_type, currency)


class TestQuoteFee:
    @pytest.mark.parametrize(
        ("amount", "basis_points", "fee"),
        [
            (1, 25, 1),  # 0.0025 of a cent is still a cent: never under-charge
            (399, 25, 1),  # 0.9975 -> 1
            (400, 25, 1),  # exactly 1
            (401, 25, 2),  # 1.0025 -> 2
            (10_000, 25, 25),
            (10_001, 25, 26),
            (12_345, 0, 0),
            (12_345, 10_000, 12_345),  # 100 %
        ],
    )
    def test_basis_points_round_up(self, amount: int, basis_points: int, fee: int) -> None:
        quote = fee_of(rule(basis_points=basis_points), amount)
        assert quote.fee == fee
        assert quote.total == amount + fee

    def test_fixed_is_added_to_the_percentage(self) -> None:
        # 30 cents + 2.9 % of 100.00 USD
        assert fee_of(rule(fixed=30, basis_points=290), 10_000).fee == 320
        assert fee_of(rule(fixed=30), 1).fee == 30

    def test_minimum(self) -> None:
        floor = rule(basis_points=100, minimum=50)
        assert fee_of(floor, 100).fee == 50  # 1 cent computed, 50 charged
        assert fee_of(floor, 5_000).fee == 50
        assert fee_of(floor, 5_001).fee == 51

    def test_maximum(self) -> None:
        capped = rule(fixed=10, basis_points=100, maximum=1_000)
        assert fee_of(capped, 89_000).fee == 900
        assert fee_of(capped, 99_000).fee == 1_000
        assert fee_of(capped, 10**12).fee == 1_000

    def test_free_tier(self) -> None:
        tiered = rule(basis_points=100, fixed=30, minimum=50, free_for_levels=["basic", "full"])
        for level in ("basic", "full"):
            quote = fee_of(tiered, 10_000, kyc_level=level)
            assert (quote.fee, quote.total) == (0, 10_000)  # even under a minimum
            assert quote.rule == tiered
        assert fee_of(tiered, 10_000, kyc_level="none").fee == 130

    def test_the_quote_names_the_rule_applied(self) -> None:
        specific = rule(currency="JPY", basis_points=50)
        pricing = table(FeeRule(type="*", currency="*", basis_points=10), specific)
        assert fee_of(pricing, 1_000, currency="JPY").rule is specific
        assert fee_of(pricing, 1_000, currency="USD").rule.basis_points == 10

    def test_minor_units_are_the_currencys_own(self) -> None:
        # JPY has no decimals and KWD three: a fee is in whichever minor unit the payment uses.
        pricing = table(rule(currency="JPY", fixed=30), rule(currency="KWD", fixed=300))
        assert fee_of(pricing, 1_000, currency="JPY").fee == 30
        assert fee_of(pricing, 1_000, currency="KWD").fee == 300

    def test_default_payouts_cost_a_flat_fee_per_instruction(self) -> None:
        for currency, fee in (("EUR", 50), ("GBP", 50), ("USD", 100)):
            for amount in (1, 10_000, 10**12):
                quote = fee_of(DEFAULT_PRICING, amount, type="payout", currency=currency)
                assert (quote.fee, quote.total) == (fee, amount + fee)
                assert quote.rule.refund_on_reversal == "none"
        # No partner bank pays out JPY by default, and no rule prices it: nothing charged.
        assert fee_of(DEFAULT_PRICING, 1_000, type="payout", currency="JPY").fee == 0

    @pytest.mark.parametrize("amount", [0, -1, -(10**20)])
    def test_amount_must_be_positive(self, amount: int) -> None:
        with pytest.raises(PricingError, match="amount must be positive"):
            fee_of(DEFAULT_PRICING, amount)

    @pytest.mark.parametrize("amount", [1.5, 100.0, "100", True, None])
    def test_amount_must_be_an_integer(self, amount: Any) -> None:
        with pytest.raises(PricingError, match="integer number of minor units"):
            fee_of(DEFAULT_PRICING, amount)

    @pytest.mark.parametrize(
        "fields",
        [
            {"kyc_level": "gold"},
            {"kyc_level": "NONE"},
            {"type": "checkout"},
            {"type": "*"},
            {"currency": "usd"},
            {"currency": "*"},
        ],
    )
    def test_unknown_level_type_or_currency_is_refused(self, fields: dict[str, Any]) -> None:
        with pytest.raises(PricingError):
            fee_of(DEFAULT_PRICING, 100, **fields)

    def test_a_total_beyond_int64_is_refused(self) -> None:
        one_percent = rule(basis_points=100)
        with pytest.raises(AmountOutOfRange, match="exceeds"):
            fee_of(one_percent, MAX_AMOUNT_MINOR)
        with pytest.raises(AmountOutOfRange):
            fee_of(rule(fixed=1), MAX_AMOUNT_MINOR)
        with pytest.raises(AmountOutOfRange):
            fee_of(ZERO_FEE, MAX_AMOUNT_MINOR + 1)
        # the largest amount with no fee (no rule, or a free tier), and the largest whose fee fits
        assert fee_of(PricingTable(), MAX_AMOUNT_MINOR).total == MAX_AMOUNT_MINOR
        free = rule(basis_points=100, free_for_levels=["full"])
        assert fee_of(free, MAX_AMOUNT_MINOR, kyc_level="full").total == MAX_AMOUNT_MINOR
        largest = (MAX_AMOUNT_MINOR * 100) // 101
        assert fee_of(one_percent, largest).total <= MAX_AMOUNT_MINOR

    def test_errors_are_value_errors_and_problem_documents(self) -> None:
        with pytest.raises(ValueError) as caught:
            fee_of(rule(basis_points=100), MAX_AMOUNT_MINOR)
        assert isinstance(caught.value, PaymeshError)
        problem = caught.value.problem()
        assert (problem["status"], problem["code"]) == (422, "amount_out_of_range")


class TestRefundFee:
    PRO_RATA = rule(basis_points=25)
    KEPT = rule(basis_points=25, refund_on_reversal="none")

    def refund(self, fee_rule: FeeRule = PRO_RATA, /, **fields: int) -> int:
        arguments = {"fee": 25, "amount": 10_000, "already_reversed": 0, "already_refunded": 0}
        arguments.update(fields)
        return refund_fee(fee_rule, **arguments)

    def test_a_full_reversal_refunds_the_fee(self) -> None:
        assert self.refund(reversed_amount=10_000) == 25

    def test_partial_reversals_round_down_and_the_last_one_completes(self) -> None:
        first = self.refund(reversed_amount=5_000)
        assert first == 12  # 12.5 -> 12: a refund is never overstated
        second = self.refund(reversed_amount=5_000, already_reversed=5_000, already_refunded=12)
        assert first + second == 25

    def test_a_small_reversal_may_refund_nothing(self) -> None:
        assert self.refund(reversed_amount=399) == 0  # 0.9975 of a cent
        assert self.refund(reversed_amount=1, already_reversed=399) == 1  # 400 reversed: 1

    def test_policy_none_keeps_the_fee(self) -> None:
        assert self.refund(self.KEPT, reversed_amount=10_000) == 0
        assert self.refund(self.KEPT, reversed_amount=1, already_reversed=9_999) == 0

    def test_no_fee_nothing_to_refund(self) -> None:
        assert self.refund(fee=0, reversed_amount=10_000) == 0

    def test_earlier_generous_refunds_are_not_clawed_back(self) -> None:
        # 20 given back for half the amount (pro rata says 12): this half gives the rest, 5.
        assert self.refund(reversed_amount=1_000, already_reversed=5_000, already_refunded=20) == 0
        assert self.refund(reversed_amount=5_000, already_reversed=5_000, already_refunded=20) == 5

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"reversed_amount": 10_001}, "exceeds the payment's amount"),
            ({"reversed_amount": 2, "already_reversed": 9_999}, "exceeds the payment's amount"),
            ({"reversed_amount": 0}, "reversed_amount must be positive"),
            ({"reversed_amount": -5}, "reversed_amount must be positive"),
            ({"reversed_amount": 1, "already_reversed": -1}, "already_reversed must be at least"),
            ({"reversed_amount": 1, "already_refunded": 26}, "exceeds the fee"),
            ({"reversed_amount": 1, "already_refunded": -1}, "already_refunded must be at least"),
            ({"reversed_amount": 1, "fee": -1}, "fee must be at least 0"),
            ({"reversed_amount": 1, "amount": 0}, "amount must be positive"),
        ],
    )
    def test_impossible_input_is_refused(self, fields: dict[str, int], message: str) -> None:
        with pytest.raises(PricingError, match=message):
            self.refund(**fields)

    def test_non_integers_are_refused(self) -> None:
        with pytest.raises(PricingError, match="integer"):
            refund_fee(
                self.PRO_RATA,
                fee=2.5,  # type: ignore[arg-type]
                amount=100,
                reversed_amount=100,
                already_reversed=0,
                already_refunded=0,
            )


class TestDefaultPricing:
    def test_same_currency_p2p_is_free(self) -> None:
        for currency in ("USD", "JPY", "KWD"):
            assert fee_of(DEFAULT_PRICING, 1_000_000, currency=currency).fee == 0

    def test_cross_currency_costs_25_basis_points(self) -> None:
        quote = fee_of(DEFAULT_PRICING, 10_000, type="cross_currency", currency="EUR")
        assert (quote.fee, quote.total) == (25, 10_025)
        assert quote.rule.refund_on_reversal == "pro_rata"
        assert fee_of(DEFAULT_PRICING, 1, type="cross_currency").fee == 1


# Properties ------------------------------------------------------------------------------

CURRENCIES = ("USD", "JPY", "KWD", "EUR")
LEVELS = ("none", "basic", "full")


@st.composite
def fee_rules(draw: st.DrawFn) -> FeeRule:
    currency = draw(st.sampled_from((*CURRENCIES, "*")))
    fields: dict[str, Any] = {
        "type": draw(st.sampled_from(("p2p", "cross_currency", "*"))),
        "currency": currency,
        "basis_points": draw(st.integers(0, 10_000)),
        "free_for_levels": draw(st.lists(st.sampled_from(LEVELS), unique=True)),
        "refund_on_reversal": draw(st.sampled_from(("pro_rata", "none"))),
    }
    if currency != "*":
        minimum = draw(st.integers(0, 10**6))
        maximum = draw(st.none() | st.integers(minimum, 10**9))
        ceiling = 10**9 if maximum is None else maximum
        fields.update(minimum=minimum, maximum=maximum, fixed=draw(st.integers(0, ceiling)))
    return FeeRule.model_validate(fields)


AMOUNTS = st.integers(1, MAX_AMOUNT_MINOR) | st.integers(1, 10**6)


class TestProperties:
    @settings(max_examples=400, deadline=None)
    @given(
        fee_rule=fee_rules(),
        amount=AMOUNTS,
        payment_type=st.sampled_from(("p2p", "cross_currency")),
        currency=st.sampled_from(CURRENCIES),
        level=st.sampled_from(LEVELS),
    )
    def test_fee_bounds_and_total(
        self, fee_rule: FeeRule, amount: int, payment_type: str, currency: str, level: str
    ) -> None:
        pricing = table(fee_rule)
        try:
            quote = quote_fee(
                pricing, type=payment_type, currency=currency, amount=amount, kyc_level=level
            )
        except AmountOutOfRange:
            exact = fee_rule.fixed + -(-amount * fee_rule.basis_points // 10_000)
            assert amount + max(exact, fee_rule.minimum) > MAX_AMOUNT_MINOR
            return
        applied = quote.rule
        assert quote.fee >= 0
        assert quote.total == amount + quote.fee <= MAX_AMOUNT_MINOR
        if level in applied.free_for_levels:
            assert quote.fee == 0
            return
        assert applied.minimum <= quote.fee
        if applied.maximum is not None:
            assert quote.fee <= applied.maximum
        else:
            # uncapped, the fee covers the exact percentage: rounding never under-charges
            assert quote.fee * 10_000 >= applied.fixed * 10_000 + amount * applied.basis_points
            assert (quote.fee - applied.fixed - 1) * 10_000 < amount * applied.basis_points or (
                quote.fee == applied.minimum
            )

    @settings(max_examples=400, deadline=None)
    @given(
        fee_rule=fee_rules(),
        fee=st.integers(0, 10**12),
        amount=st.integers(1, 10**12),
        data=st.data(),
        reverse_all=st.booleans(),
    )
    def test_partial_refunds_never_exceed_the_fee(
        self, fee_rule: FeeRule, fee: int, amount: int, data: st.DataObject, reverse_all: bool
    ) -> None:
        # Cut the amount at random points into reversals, in order; maybe stop short of it all.
        cuts = data.draw(st.lists(st.integers(0, amount), max_size=8))
        points = sorted({*cuts, 0})
        end = amount if reverse_all else points[-1]
        parts = [b - a for a, b in zip(points, [*points[1:], end], strict=True) if b > a]
        reversed_so_far = refunded = 0
        for part in parts:
            given_back = refund_fee(
                fee_rule,
                fee=fee,
                amount=amount,
                reversed_amount=part,
                already_reversed=reversed_so_far,
                already_refunded=refunded,
            )
            assert given_back >= 0
            reversed_so_far += part
            refunded += given_back
            assert refunded <= fee
        if fee_rule.refund_on_reversal == "none":
            assert refunded == 0
        elif reversed_so_far == amount:
            assert refunded == fee
        else:
            assert refunded == fee * reversed_so_far // amount
