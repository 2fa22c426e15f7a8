"""Payout and partner-bank error codes, named after the condition."""

from __future__ import annotations

from paymesh.providers.errors import ProvidersError


class BeneficiaryNameRequired(ProvidersError):
    code = "beneficiary_name_required"
    status = 422
    title = "The beneficiary's name is required"


class InvalidIban(ProvidersError):
    code = "invalid_iban"
    status = 422
    title = "The IBAN's structure or checksum is wrong"


class InvalidBic(ProvidersError):
    code = "invalid_bic"
    status = 422
    title = "The BIC is not a valid business identifier code"


class IbanCountryMismatch(ProvidersError):
    code = "iban_country_mismatch"
    status = 422
    title = "The IBAN belongs to another country than the beneficiary's"


class UnsupportedCurrency(ProvidersError):
    code = "unsupported_currency"
    status = 422
    title = "No configured partner bank pays out in this currency"


class UnsupportedCountry(ProvidersError):
    code = "unsupported_country"
    status = 422
    title = "No configured partner bank pays out in this currency to this country"


class BeneficiaryAccountNotFound(ProvidersError):
    code = "beneficiary_account_not_found"
    status = 422
    title = "The partner bank knows no such beneficiary account"


class PayoutMessageInvalid(ProvidersError):
    code = "payout_message_invalid"
    status = 422
    title = "The payout cannot be written as a valid ISO 20022 pacs.008 message"


class PayoutNotFound(ProvidersError):
    code = "payout_not_found"
    status = 404
    title = "No payout instruction for this payment"


class PayoutConflict(ProvidersError):
    code = "payout_conflict"
    status = 409
    title = "A payout instruction for this payment exists with different details"


class BankNotFound(ProvidersError):
    code = "bank_not_found"
    status = 404
    title = "No partner bank is configured under this name"


class BankUnavailable(ProvidersError):
    code = "bank_unavailable"
    status = 503
    title = "The partner bank did not answer"


class InvalidBankSignature(ProvidersError):
    code = "invalid_bank_signature"
    status = 401
    title = "The bank's X-Bank-Signature is missing or does not match the body"


class BankSignatureExpired(ProvidersError):
    code = "bank_signature_expired"
    status = 401
    title = "The bank's callback was signed too long ago (or in the future)"


class MalformedBankMessage(ProvidersError):
    code = "malformed_bank_message"
    status = 400
    title = "The body is not a valid ISO 20022 pacs.002 status report"


class UnknownPayoutInstruction(ProvidersError):
    code = "unknown_payout_instruction"
    status = 404
    title = "The status report names no payout instruction sent to this bank"
