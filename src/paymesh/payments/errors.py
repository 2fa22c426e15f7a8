"""Payments errors, named after the condition."""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class PaymentsError(PaymeshError):
    """Root of the payments service's errors."""


class PaymentNotFound(PaymentsError):
    code = "payment_not_found"
    status = 404
    title = "No such payment"


class IllegalTransition(PaymentsError):
    code = "illegal_transition"
    status = 409
    title = "The payment is not in a state that allows this"


class SourceWalletNotFound(PaymentsError):
    code = "source_wallet_not_found"
    status = 404
    title = "No such source wallet of yours"


class SourceWalletInactive(PaymentsError):
    code = "source_wallet_inactive"
    status = 409
    title = "The source wallet is frozen or closed"


class DestinationInvalid(PaymentsError):
    code = "destination_invalid"
    status = 422
    title = "The destination cannot receive this payment"


class SelfPayment(PaymentsError):
    code = "self_payment"
    status = 422
    title = "A payment into the wallet it comes from"


class CurrencyMismatch(PaymentsError):
    code = "currency_mismatch"
    status = 422
    title = "The currencies do not fit the payment type"


class QuoteRequired(PaymentsError):
    code = "quote_mismatch"
    status = 422
    title = "The quote does not match the payment"


class QuoteExpired(PaymentsError):
    code = "quote_expired"
    status = 409
    title = "The quote has expired"


class QuoteUsed(PaymentsError):
    code = "quote_used"
    status = 409
    title = "The quote was already used"


class IdempotencyKeyRequired(PaymentsError):
    code = "idempotency_key_required"
    status = 400
    title = "Creating a payment needs an Idempotency-Key header"


class IdempotencyKeyReused(PaymentsError):
    code = "idempotency_key_reused"
    status = 422
    title = "The Idempotency-Key was used for a different payment"


class InvalidCode(PaymentsError):
    code = "invalid_code"
    status = 422
    title = "The one-time code is wrong"


class ReversalTooLarge(PaymentsError):
    code = "reversal_exceeds_payment"
    status = 409
    title = "More than what is left of the payment"


class PayeeLacksFunds(PaymentsError):
    code = "payee_insufficient_funds"
    status = 409
    title = "The payee's wallet does not hold enough to reverse this"


class LiquidityLacksFunds(PaymentsError):
    code = "fx_liquidity_insufficient"
    status = 409
    title = "The FX liquidity account cannot give back the source amount of this reversal"


class DependencyUnavailable(PaymentsError):
    code = "dependency_unavailable"
    status = 503
    title = "A service the payment needs did not answer; the payment will be resumed"


class PayoutNotReversible(PaymentsError):
    code = "payout_not_reversible"
    status = 422
    title = "A payout left for another bank: it cannot be reversed here"


# A payout's beneficiary, as providers' validation refuses it (the same codes, answered
# by payments before anything is stored or moved).


class BeneficiaryNameRequired(PaymentsError):
    code = "beneficiary_name_required"
    status = 422
    title = "The beneficiary's name is required"


class InvalidIban(PaymentsError):
    code = "invalid_iban"
    status = 422
    title = "The IBAN's structure or checksum is wrong"


class InvalidBic(PaymentsError):
    code = "invalid_bic"
    status = 422
    title = "The BIC is not a valid business identifier code"


class IbanCountryMismatch(PaymentsError):
    code = "iban_country_mismatch"
    status = 422
    title = "The IBAN belongs to another country than the beneficiary's"


class UnsupportedCurrency(PaymentsError):
    code = "unsupported_currency"
    status = 422
    title = "No configured partner bank pays out in this currency"


class UnsupportedCountry(PaymentsError):
    code = "unsupported_country"
    status = 422
    title = "No configured partner bank pays out in this currency to this country"


class BeneficiaryAccountNotFound(PaymentsError):
    code = "beneficiary_account_not_found"
    status = 422
    title = "The partner bank knows no such beneficiary account"


BENEFICIARY_ERRORS: dict[str, type[PaymentsError]] = {
    error.code: error
    for error in (
        BeneficiaryNameRequired,
        InvalidIban,
        InvalidBic,
        IbanCountryMismatch,
        UnsupportedCurrency,
        UnsupportedCountry,
        BeneficiaryAccountNotFound,
    )
}
