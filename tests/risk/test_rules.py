"""The default rule set reproduces the source design exactly, boundaries included; rule
sets are checked when written and fail closed when a rule cannot answer."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymesh.risk.rules import (
    DEFAULT_RULESET,
    CompiledRuleSet,
    Facts,
    RuleCompileError,
    RuleDefinition,
    RuleSetDefinition,
)
from paymesh.risk.service import answer_body, decision_view

RULES = CompiledRuleSet(1, DEFAULT_RULESET)
POINTS = {rule.name: rule.points for rule in DEFAULT_RULESET.rules}


def decide(**facts: Any) -> Any:
    return RULES.evaluate(Facts(**{"kyc_status": "verified", **facts}))


def fired(outcome: Any) -> list[str]:
    return [reason.rule for reason in outcome.reasons]


class TestAmountRules:
    @pytest.mark.parametrize(
        ("amount_usd", "score"),
        [
            (500_000, 0),  # exactly USD 5,000.00 adds nothing
            (500_001, 30),
            (1_000_000, 30),  # exactly USD 10,000.00: only the first rule
            (1_000_001, 50),
        ],
    )
    def test_boundaries_are_strict(self, amount_usd: int, score: int) -> None:
        assert decide(amount_usd=amount_usd).score == score

    def test_over_10000_is_high_and_steps_up(self) -> None:
        outcome = decide(amount_usd=1_000_001)
        assert (outcome.level, outcome.decision) == ("high", "step_up")
        assert fired(outcome) == ["amount_over_5000", "amount_over_10000"]

    def test_over_5000_is_medium_and_allowed(self) -> None:
        outcome = decide(amount_usd=600_000)
        assert (outcome.score, outcome.level, outcome.decision) == (30, "medium", "allow")


class TestVelocityRule:
    def test_five_earlier_transactions_add_nothing(self) -> None:
        assert decide(amount_usd=100, transactions_24h=5).score == 0

    def test_six_add_25(self) -> None:
        outcome = decide(amount_usd=100, transactions_24h=6)
        assert (outcome.score, outcome.level, fired(outcome)) == (25, "low", ["velocity_24h"])

    def test_velocity_with_a_large_amount_is_high(self) -> None:
        outcome = decide(amount_usd=500_001, transactions_24h=6)
        assert (outcome.score, outcome.level, outcome.decision) == (55, "high", "step_up")


class TestKycRule:
    @pytest.mark.parametrize("status", ["none", "pending", "rejected", "needs_review"])
    def test_not_verified_adds_40(self, status: str) -> None:
        outcome = decide(amount_usd=100, kyc_status=status)
        assert (outcome.score, outcome.level, outcome.decision) == (40, "medium", "allow")

    def test_not_verified_and_over_5000_steps_up(self) -> None:
        outcome = decide(amount_usd=500_001, kyc_status="none")
        assert (outcome.score, outcome.level, outcome.decision) == (70, "high", "step_up")


class TestSanctionsRule:
    def test_a_hit_is_review_whatever_the_score(self) -> None:
        outcome = decide(amount_usd=100, sanctions_hit=True)
        assert (outcome.score, outcome.level, outcome.decision) == (100, "high", "review")

    def test_review_beats_step_up(self) -> None:
        assert decide(amount_usd=1_000_001, sanctions_hit=True).decision == "review"


class TestLimits:
    def test_per_transaction_limit_blocks(self) -> None:
        outcome = decide(amount_usd=10_001, limit_per_transaction_usd=10_000)
        assert outcome.decision == "block"
        assert fired(outcome) == ["limit_per_transaction"]

    def test_exactly_the_limit_is_allowed(self) -> None:
        assert decide(amount_usd=10_000, limit_per_transaction_usd=10_000).decision == "allow"

    def test_daily_limit_counts_what_was_used_today(self) -> None:
        facts = {"limit_daily_usd": 20_000, "daily_usd": 15_000}
        assert decide(amount_usd=5_000, **facts).decision == "allow"
        assert decide(amount_usd=5_001, **facts).decision == "block"

    def test_monthly_limit(self) -> None:
        outcome = decide(amount_usd=2, limit_monthly_usd=50_000, monthly_usd=49_999)
        assert fired(outcome) == ["limit_monthly"]
        assert outcome.decision == "block"

    def test_block_beats_review(self) -> None:
        outcome = decide(amount_usd=10_001, limit_per_transaction_usd=10_000, sanctions_hit=True)
        assert outcome.decision == "block"
        assert set(fired(outcome)) == {"sanctions_match", "limit_per_transaction"}


class TestScoringProperties:
    @settings(max_examples=200, deadline=None)
    @given(
        amount_usd=st.integers(min_value=0, max_value=10**12),
        transactions=st.integers(min_value=0, max_value=50),
        kyc=st.sampled_from(["none", "pending", "verified", "rejected", "needs_review"]),
        hit=st.booleans(),
    )
    def test_score_is_the_sum_of_the_reasons_and_level_follows_it(
        self, amount_usd: int, transactions: int, kyc: str, hit: bool
    ) -> None:
        outcome = decide(
            amount_usd=amount_usd, transactions_24h=transactions, kyc_status=kyc, sanctions_hit=hit
        )
        assert outcome.score == sum(reason.points for reason in outcome.reasons)
        assert all(reason.points == POINTS[reason.rule] for reason in outcome.reasons)
        expected = "high" if outcome.score >= 50 else "medium" if outcome.score >= 30 else "low"
        assert outcome.level == expected
        if hit:
            assert outcome.decision == "review"
        elif outcome.level == "high":
            assert outcome.decision == "step_up"
        else:
            assert outcome.decision == "allow"


def ruleset(condition: str, **fields: Any) -> RuleSetDefinition:
    rule = RuleDefinition(name="r", description="d", condition=condition, points=10, **fields)
    return RuleSetDefinition(description="test", rules=[rule])


class TestRuleSetChecks:
    @pytest.mark.parametrize(
        ("condition", "message"),
        [
            ("amount_usd >", "rule r"),
            ("balance > 5", "unknown facts ['balance']"),
            ("amount_usd + 1", "must be true or false"),
            ('kyc_status == "verified" \x00', "control characters"),
        ],
    )
    def test_a_bad_rule_is_refused_when_written(self, condition: str, message: str) -> None:
        with pytest.raises(RuleCompileError, match="rule r") as raised:
            CompiledRuleSet(2, ruleset(condition))
        assert message in str(raised.value)

    def test_a_rule_that_fails_at_run_time_sends_to_review(self) -> None:
        rules = CompiledRuleSet(2, ruleset("amount_usd / (transactions_24h - 3) > 1000"))
        outcome = rules.evaluate(Facts(amount_usd=10, transactions_24h=3))
        assert outcome.decision == "review"
        assert outcome.reasons[0].detail.startswith("rule failed")

    def test_duplicate_names_are_refused(self) -> None:
        rule = RuleDefinition(name="r", description="d", condition="true", points=1)
        with pytest.raises(ValueError, match="unique"):
            RuleSetDefinition(description="x", rules=[rule, rule])

    def test_thresholds_must_be_ordered(self) -> None:
        with pytest.raises(ValueError, match="medium must not exceed high"):
            RuleSetDefinition.model_validate(
                {
                    "description": "x",
                    "rules": [{"name": "r", "description": "d", "condition": "true", "points": 1}],
                    "levels": {"high": 10, "medium": 20},
                }
            )


# -- the answer's JSON ------------------------------------------------------------------------

_texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_decision_rows = st.fixed_dictionaries(
    {
        "id": _texts,
        "transaction_id": _texts,
        "score": st.integers(-(2**63), 2**63 - 1),
        "level": st.sampled_from(["low", "medium", "high"]),
        "decision": st.sampled_from(["allow", "step_up", "review", "block"]),
        "reasons": st.lists(
            st.fixed_dictionaries(
                {"rule": _texts, "points": st.integers(-(2**63), 2**63 - 1), "detail": _texts}
            ),
            max_size=4,
        ),
        "ruleset_version": st.integers(1, 2**31 - 1),
        "created_at": st.datetimes(
            min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9999, 12, 30)
        ).map(lambda moment: moment.replace(tzinfo=dt.UTC)),
    }
)


@given(_decision_rows)
def test_the_answer_is_the_models_json_byte_for_byte(row: dict[str, Any]) -> None:
    """The hot path writes the answer straight from the stored row; clients (payments'
    HttpRiskClient among them) read it as `DecisionOut`, and a replayed key answers the
    same bytes, so it must equal what the model writes for every row."""
    assert answer_body(row) == decision_view(SimpleNamespace(**row)).model_dump_json().encode()
