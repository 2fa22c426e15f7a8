"""Providers error codes, named after the condition."""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class ProvidersError(PaymeshError):
    code = "providers_error"
    status = 409
    title = "The providers service refused the operation"


class KycCheckNotFound(ProvidersError):
    code = "kyc_check_not_found"
    status = 404
    title = "KYC check not found"


class KycCheckAlreadyDecided(ProvidersError):
    code = "kyc_check_already_decided"
    status = 409
    title = "The KYC check already has a final decision"


class InvalidCallbackSignature(ProvidersError):
    code = "invalid_callback_signature"
    status = 400
    title = "The callback's signature is missing or does not match its body"


class CallbackTimestampOutOfTolerance(ProvidersError):
    code = "callback_timestamp_out_of_tolerance"
    status = 400
    title = "The callback was signed too long ago (or in the future)"


class CallbackReplayed(ProvidersError):
    code = "callback_replayed"
    status = 409
    title = "This callback was received before"


class MalformedCallback(ProvidersError):
    code = "malformed_callback"
    status = 400
    title = "The callback's body is not a decision this service understands"


class KycVendorUnavailable(ProvidersError):
    code = "kyc_vendor_unavailable"
    status = 503
    title = "The KYC vendor did not answer"


class KycVendorRefused(ProvidersError):
    code = "kyc_vendor_refused"
    status = 422
    title = "The KYC vendor refused the check's data"


class KycVendorNotConfigured(ProvidersError):
    code = "kyc_vendor_not_configured"
    status = 503
    title = "No KYC vendor is configured (PAYMESH_PROVIDERS_KYC_VENDOR_URL)"
