"""Profiles error codes, named after the condition."""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class ProfilesError(PaymeshError):
    code = "profiles_error"
    status = 409
    title = "The profiles service refused the operation"


class ProfileNotFound(ProfilesError):
    code = "profile_not_found"
    status = 404
    title = "Profile not found"


class KycSubmissionPending(ProfilesError):
    code = "kyc_submission_pending"
    status = 409
    title = "A KYC submission is still waiting for the vendor's decision"


class KycUnderReview(ProfilesError):
    code = "kyc_under_review"
    status = 409
    title = "The latest KYC submission is being reviewed by an analyst"


class KycAlreadyVerified(ProfilesError):
    code = "kyc_already_verified"
    status = 409
    title = "The customer is already verified at the highest level"


class TooManyKycSubmissions(ProfilesError):
    code = "too_many_kyc_submissions"
    status = 429
    title = "Too many KYC submissions in the last 24 hours"


class VerifiedIdentityLocked(ProfilesError):
    code = "verified_identity_locked"
    status = 409
    title = "The legal name and date of birth were verified; submit KYC again to change them"
