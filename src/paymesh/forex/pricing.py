"""The arithmetic of rates and conversions: pure functions on `Decimal`, no I/O.

One rounding rule, always toward the platform:

* a rate derived by division (a cross rate, an inverse, a rate less the markup) is cut
  down to `SIGNIFICANT_DIGITS` significant digits, never rounded up;
* an amount the customer receives is rounded down to the target's minor unit, and an
  amount the customer pays is rounded up to the source's.

Since every derived rate is at most the exact ratio, a rate and the rate back multiply to
at most 1, so converting there and back (USD -> JPY -> USD) never returns more than it
started with.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from paymesh.forex.errors import AmountOutOfRange, AmountTooSmall, SameCurrency
from paymesh.kernel.money import MAX_AMOUNT_MINOR, get_currency

SIGNIFICANT_DIGITS = 12
BASIS_POINTS = Decimal(10_000)
_WIDE = 80
"""Working precision: an int64 amount (19 digits) times a 12-digit rate, with room."""


def truncate(value: Decimal) -> Decimal:
    """`value` cut down (toward zero) to `SIGNIFICANT_DIGITS` significant digits."""
    with decimal.localcontext(prec=SIGNIFICANT_DIGITS, rounding=ROUND_DOWN):
        return (+value).normalize()


def cross_rate(base_per_eur: Decimal, quote_per_eur: Decimal) -> Decimal:
    """Units of the quote currency per unit of the base, from both currencies' rates per
    EUR (the ECB's reference form). A published EUR rate is returned exactly."""
    if base_per_eur == 1:
        return quote_per_eur
    with decimal.localcontext(prec=_WIDE):
        ratio = quote_per_eur / base_per_eur
    return truncate(ratio)


def customer_rate(mid: Decimal, markup_bps: int) -> Decimal:
    """The rate a customer gets: the mid rate less the markup, cut down."""
    if markup_bps == 0:
        return mid
    with decimal.localcontext(prec=_WIDE):
        marked = mid * (BASIS_POINTS - markup_bps) / BASIS_POINTS
    return truncate(marked)


def received(amount_minor: int, source: str, target: str, rate: Decimal) -> int:
    """Minor units of `target` a customer receives for `amount_minor` of `source` at
    `rate`: rounded down. Refuses results of zero or beyond int64."""
    if source == target:
        raise SameCurrency(detail=f"{source} to {source}")
    source_exponent = get_currency(source).exponent
    target_exponent = get_currency(target).exponent
    with decimal.localcontext(prec=_WIDE):
        exact = Decimal(amount_minor) * rate
        scaled = exact.scaleb(target_exponent - source_exponent)
        result = int(scaled.to_integral_value(rounding=ROUND_FLOOR))
    return _bounded(result, target, amount_minor, source)


def paid(amount_minor: int, source: str, target: str, rate: Decimal) -> int:
    """Minor units of `source` a customer pays to receive exactly `amount_minor` of
    `target` at `rate` (target per source): rounded up, so that converting what is paid
    back at `rate` and rounding down gives at least `amount_minor`."""
    if source == target:
        raise SameCurrency(detail=f"{source} to {source}")
    source_exponent = get_currency(source).exponent
    target_exponent = get_currency(target).exponent
    with decimal.localcontext(prec=_WIDE):
        exact = Decimal(amount_minor) / rate
        scaled = exact.scaleb(source_exponent - target_exponent)
        result = int(scaled.to_integral_value(rounding=ROUND_CEILING))
    return _bounded(result, source, amount_minor, target)


def _bounded(result: int, currency: str, amount_minor: int, other: str) -> int:
    if result > MAX_AMOUNT_MINOR:
        raise AmountOutOfRange(
            detail=f"{amount_minor} {other} minor units convert to more than the largest "
            f"amount of {currency}"
        )
    if result < 1:
        raise AmountTooSmall(
            detail=f"{amount_minor} {other} minor units are worth less than one minor unit "
            f"of {currency}"
        )
    return result


def rate_text(rate: Decimal) -> str:
    """The rate as a plain decimal string (no exponent): `"0.848248367122"`, `"162"`."""
    return format(rate.normalize(), "f")
