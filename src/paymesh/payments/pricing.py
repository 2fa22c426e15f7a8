"""Payment fees as data: a pricing table of fee rules, the fee a payment costs, and the part of
it a reversal gives back. Pure functions over integer minor units; no database, no HTTP.

A rule applies to a payment type (`p2p`, `cross_currency`, or `*` for any) in a currency (an
ISO 4217 code, or `*` for any). The most specific rule wins: exact type and currency, then
the type in any currency, then any type in the currency, then `*`/`*`. No two rules may share
a (type, currency) pair, so there are no ties; when nothing matches, the fee is zero.

How a fee is computed (`quote_fee`):

    fee = fixed + ceil(amount * basis_points / 10_000), clamped to [minimum, maximum]
    fee = 0 when the payer's KYC level is one of the rule's `free_for_levels`
    total = amount + fee            (the payer pays the fee on top of the amount sent)

The percentage is rounded *up* to the minor unit, toward the platform like every rounding in
forex (docs/decisions.md, "Forex: one rounding rule"): a fee is never under-charged by
rounding, and the payer pays at most one minor unit more than the exact percentage (1 cent at
25 bps costs 1 cent). The payer sees the fee and the total before confirming, so the rounding
is never a surprise. Integer arithmetic only: a float would round 0.1 + 0.2.

`fixed`, `minimum` and `maximum` are amounts in the payment currency's minor unit. 30 minor
units are 0.30 USD, 30 JPY (about a fifth of that) and 0.030 KWD, so a rule for every
currency (`currency: "*"`) may carry only a percentage: amounts need a rule per currency.

Defaults (`DEFAULT_PRICING`) and why:

- `p2p` in one currency is free: sending money to a friend in the same currency costs the
  platform a ledger transfer and nothing else, and free P2P is what brings customers in.
- `cross_currency` costs 25 bps (0.25 %), no fixed part, no minimum or maximum. The forex
  markup (in the quoted rate) already pays for the FX spread and the liquidity pool's risk,
  so the fee is small: it is the visible service charge for a payment that moves two
  currencies' liquidity. Stating it apart from the rate keeps the price transparent (the
  payer sees rate, markup and fee separately) rather than hiding more in the rate.
- `payout` to another bank costs a flat fee per instruction (EUR 0.50, GBP 0.50, USD 1.00):
  the partner bank charges per message, not per amount, so the price follows the cost. A
  rejected or timed-out payout takes no fee (its reservation, fee included, is voided);
  a payout cannot be reversed, so there is nothing to refund.
- P2P and cross-currency refund the fee pro rata on reversal: a reversed payment delivered
  nothing, and keeping the fee would charge the customer for our undoing it.

Errors are `PricingError`s: `ValueError`s for pure callers, and 422 problem documents if one
reaches the edge (they are `PaymeshError`s too).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paymesh.kernel.errors import PaymeshError
from paymesh.kernel.money import MAX_AMOUNT_MINOR, CurrencyCode, UnknownCurrency, get_currency

PaymentType = Literal["p2p", "cross_currency", "payout"]
KycLevel = Literal["none", "basic", "full"]
RefundPolicy = Literal["pro_rata", "none"]
ANY: Literal["*"] = "*"
BASIS_POINTS_PER_UNIT = 10_000
MAX_RULES = 1_000

_PAYMENT_TYPES: frozenset[str] = frozenset(("p2p", "cross_currency", "payout"))
_KYC_LEVELS: frozenset[str] = frozenset(("none", "basic", "full"))

MinorAmount = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT_MINOR)]


class PricingError(PaymeshError, ValueError):
    """Bad input to a pricing function."""

    code = "invalid_pricing_input"
    status = 422
    title = "The input cannot be priced"


class AmountOutOfRange(PricingError):
    code = "amount_out_of_range"
    status = 422
    title = "The amount plus its fee exceeds the largest amount (2^63 - 1 minor units)"


class FeeRule(BaseModel):
    """One line of the price list. Amounts are minor units of the payment's currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: PaymentType | Literal["*"] = Field(
        description="The payment type this rule prices; `*` for any type."
    )
    currency: CurrencyCode | Literal["*"] = Field(
        description="The payment currency (ISO 4217, upper case) this rule prices; `*` for any."
    )
    basis_points: int = Field(
        default=0,
        strict=True,
        ge=0,
        le=BASIS_POINTS_PER_UNIT,
        description="Percentage part of the fee in hundredths of a percent (25 = 0.25 %).",
    )
    fixed: MinorAmount = Field(
        default=0, description="Fixed part of the fee, in minor units of the payment currency."
    )
    minimum: MinorAmount = Field(
        default=0, description="The least fee charged (minor units), unless the tier is free."
    )
    maximum: MinorAmount | None = Field(
        default=None, description="The most fee charged (minor units); null for no cap."
    )
    free_for_levels: tuple[KycLevel, ...] = Field(
        default=(),
        max_length=3,
        description="KYC levels that pay no fee under this rule (a free tier).",
    )
    refund_on_reversal: RefundPolicy = Field(
        default="pro_rata",
        description="`pro_rata`: a reversal gives back the fee in proportion to the amount "
        "reversed; `none`: the fee is kept.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeeRule:
        if self.maximum is not None and self.maximum < self.minimum:
            raise ValueError("maximum must not be less than minimum")
        if self.maximum is not None and self.fixed > self.maximum:
            raise ValueError("fixed exceeds maximum: the percentage could never apply")
        if self.currency == ANY and (self.fixed or self.minimum or self.maximum is not None):
            raise ValueError(
                "a rule for every currency carries only basis points: fixed, minimum and "
                "maximum are amounts in one currency's minor unit"
            )
        if len(set(self.free_for_levels)) != len(self.free_for_levels):
            raise ValueError("free_for_levels lists a level twice")
        return self


ZERO_FEE = FeeRule(type=ANY, currency=ANY, refund_on_reversal="none")
"""What `rule_for` answers when no rule matches: nothing charged, nothing to give back."""


class PricingTable(BaseModel):
    """A price list. Load one from JSON-able data with
    `PricingTable.model_validate({"rules": [...]})`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[FeeRule, ...] = Field(default=(), max_length=MAX_RULES)

    @model_validator(mode="after")
    def _unique_keys(self) -> PricingTable:
        seen: set[tuple[str, str]] = set()
        for rule in self.rules:
            key = (rule.type, rule.currency)
            if key in seen:
                raise ValueError(f"two rules for type {key[0]!r} and currency {key[1]!r}")
            seen.add(key)
        return self

    def rule_for(self, type: str, currency: str) -> FeeRule:  # noqa: A002 - the rule's field
        """The most specific rule for a payment of `type` in `currency`, or `ZERO_FEE`."""
        _check_type(type)
        _check_currency(currency)
        # One pass over the rules, no index: a table is small, and an index kept beside the
        # fields could be skipped (model_construct) and silently price everything at zero.
        order = {(type, currency): 0, (type, ANY): 1, (ANY, currency): 2, (ANY, ANY): 3}
        best, best_rank = ZERO_FEE, len(order)
        for rule in self.rules:
            rank = order.get((rule.type, rule.currency), best_rank)
            if rank < best_rank:
                best, best_rank = rule, rank
        return best


class FeeQuote(BaseModel):
    """The fee of one payment, from the payer's side, in minor units of the payment currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fee: int = Field(ge=0, le=MAX_AMOUNT_MINOR, description="The fee the payer pays (minor).")
    total: int = Field(
        gt=0, le=MAX_AMOUNT_MINOR, description="amount + fee: what leaves the payer (minor)."
    )
    rule: FeeRule = Field(description="The rule applied, kept with the payment's record.")


def quote_fee(
    table: PricingTable,
    *,
    type: str,  # noqa: A002 - named like FeeRule.type and the risk facts' `type`
    currency: str,
    amount: int,
    kyc_level: str,
) -> FeeQuote:
    """The fee for sending `amount` (minor units, > 0) of `currency` in a payment of `type` by
    a payer at `kyc_level`. Raises `PricingError` for bad input and `AmountOutOfRange` when
    the total would not fit a signed 64-bit integer."""
    _check_amount("amount", amount, positive=True)
    if kyc_level not in _KYC_LEVELS:
        raise PricingError(detail=f"{kyc_level!r} is not a KYC level (none, basic, full)")
    rule = table.rule_for(type, currency)
    fee = 0 if kyc_level in rule.free_for_levels else _rule_fee(rule, amount)
    total = amount + fee
    if total > MAX_AMOUNT_MINOR:
        raise AmountOutOfRange(
            detail=f"{amount} plus a fee of {fee} exceeds {MAX_AMOUNT_MINOR} minor units"
        )
    return FeeQuote(fee=fee, total=total, rule=rule)


def _rule_fee(rule: FeeRule, amount: int) -> int:
    # Ceiling division on integers: -(-a // b) rounds up without a float.
    percentage = -(-amount * rule.basis_points // BASIS_POINTS_PER_UNIT)
    fee = max(rule.fixed + percentage, rule.minimum)
    return fee if rule.maximum is None else min(fee, rule.maximum)


def refund_fee(
    rule: FeeRule,
    *,
    fee: int,
    amount: int,
    reversed_amount: int,
    already_reversed: int,
    already_refunded: int,
) -> int:
    """The part of a payment's fee to give back with one (partial) reversal.

    - `rule`: the rule the fee was charged under (`FeeQuote.rule`, kept with the payment);
    - `fee`: the fee charged; `amount`: the payment's amount (both minor units);
    - `reversed_amount`: what this reversal sends back (> 0);
    - `already_reversed`: the sum of the earlier reversals of this payment;
    - `already_refunded`: the sum of the fee refunds those earlier reversals gave.

    Pro rata, the refunds given after reversing R in total are floor(fee * R / amount), so
    every refund is that minus `already_refunded`: the refunds of any sequence of partial
    reversals sum to at most the fee (rounded down, toward the platform) and to exactly the
    fee once the whole amount is reversed. If earlier refunds were more generous than the
    pro rata share, this one is 0 rather than negative. Policy `none`: always 0.
    """
    _check_amount("amount", amount, positive=True)
    _check_amount("fee", fee)
    _check_amount("reversed_amount", reversed_amount, positive=True)
    _check_amount("already_reversed", already_reversed)
    _check_amount("already_refunded", already_refunded)
    reversed_total = already_reversed + reversed_amount
    if reversed_total > amount:
        raise PricingError(
            detail=f"reversing {reversed_amount} after {already_reversed} exceeds the "
            f"payment's amount of {amount}"
        )
    if already_refunded > fee:
        raise PricingError(detail=f"{already_refunded} refunded exceeds the fee of {fee}")
    if rule.refund_on_reversal == "none":
        return 0
    return max(fee * reversed_total // amount - already_refunded, 0)


def _check_amount(name: str, value: int, *, positive: bool = False) -> None:
    if type(value) is not int:
        raise PricingError(detail=f"{name} is an integer number of minor units")
    if value < (1 if positive else 0):
        raise PricingError(detail=f"{name} must be {'positive' if positive else 'at least 0'}")
    if value > MAX_AMOUNT_MINOR:
        raise AmountOutOfRange(detail=f"{name} exceeds {MAX_AMOUNT_MINOR} minor units")


def _check_type(type_: str) -> None:
    if type_ not in _PAYMENT_TYPES:
        raise PricingError(detail=f"{type_!r} is not a payment type (p2p, cross_currency)")


def _check_currency(currency: str) -> None:
    try:
        get_currency(currency)
    except (UnknownCurrency, TypeError):
        raise PricingError(detail=f"{currency!r} is not an ISO 4217 currency code") from None


DEFAULT_PRICING = PricingTable(
    rules=(
        FeeRule(type="p2p", currency=ANY, basis_points=0),
        FeeRule(type="cross_currency", currency=ANY, basis_points=25),
        FeeRule(type="payout", currency="EUR", fixed=50, refund_on_reversal="none"),
        FeeRule(type="payout", currency="GBP", fixed=50, refund_on_reversal="none"),
        FeeRule(type="payout", currency="USD", fixed=100, refund_on_reversal="none"),
    )
)
"""Free same-currency P2P; 0.25 % on cross-currency payments; a flat fee per payout (see the
module docstring)."""
