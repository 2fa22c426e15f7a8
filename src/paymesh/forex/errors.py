"""Forex errors, named after the condition."""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class ForexError(PaymeshError):
    """Root of the forex service's errors."""


class InvalidPair(ForexError):
    code = "invalid_pair"
    status = 422
    title = "A pair is two ISO 4217 codes, e.g. EURUSD"


class SameCurrency(ForexError):
    code = "same_currency"
    status = 422
    title = "The two currencies must differ"


class CurrencyNotQuoted(ForexError):
    code = "currency_not_quoted"
    status = 422
    title = "The rate provider publishes no rate for this currency"


class DateOutOfRange(ForexError):
    code = "date_out_of_range"
    status = 422
    title = "No rates exist for this date"


class AmountTooSmall(ForexError):
    code = "amount_too_small"
    status = 422
    title = "The converted amount is less than one minor unit"


class AmountOutOfRange(ForexError):
    code = "amount_out_of_range"
    status = 422
    title = "The converted amount exceeds the largest amount (2^63 - 1 minor units)"


class RatesUnavailable(ForexError):
    code = "rates_unavailable"
    status = 503
    title = "The rate provider did not answer and no rates are held"


class RatesStale(ForexError):
    code = "rates_stale"
    status = 503
    title = "The rates held are too old to price on"


class QuoteNotFound(ForexError):
    code = "quote_not_found"
    status = 404
    title = "No such quote"


class QuoteExpired(ForexError):
    code = "quote_expired"
    status = 409
    title = "The quote has expired"


class QuoteAlreadyConsumed(ForexError):
    code = "quote_already_consumed"
    status = 409
    title = "The quote was already used"


class ProviderError(Exception):
    """A rate provider failed (unreachable, refused our key, answered nonsense). Internal:
    the service turns it into `RatesUnavailable` or, once rates age, `RatesStale`."""


RATE_ERRORS = (InvalidPair, SameCurrency, CurrencyNotQuoted, DateOutOfRange, RatesUnavailable)
PRICING_ERRORS = (
    SameCurrency,
    CurrencyNotQuoted,
    AmountTooSmall,
    AmountOutOfRange,
    RatesUnavailable,
    RatesStale,
)
