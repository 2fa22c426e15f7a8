"""Identity errors, named after the condition. On `/v1/identity` they render as problem
documents; the OAuth2 endpoints answer in RFC 6749's error format instead."""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class IdentityError(PaymeshError):
    code = "identity_error"
    status = 409
    title = "The identity service refused the operation"


class UsernameTaken(IdentityError):
    code = "username_taken"
    status = 409
    title = "A user with this username exists"


class EmailTaken(IdentityError):
    code = "email_taken"
    status = 409
    title = "A user with this email exists"


class ClientIdTaken(IdentityError):
    code = "client_id_taken"
    status = 409
    title = "A client with this id exists"


class UserNotFound(IdentityError):
    code = "user_not_found"
    status = 404
    title = "User not found"


class ClientNotFound(IdentityError):
    code = "client_not_found"
    status = 404
    title = "Client not found"


class InvalidClientConfiguration(IdentityError):
    code = "invalid_client_configuration"
    status = 422
    title = "The client's grants, redirect URIs or type do not fit together"


class InvalidCredentials(IdentityError):
    code = "invalid_credentials"
    status = 401
    title = "Wrong username or password"


class TotpRequired(IdentityError):
    code = "totp_required"
    status = 401
    title = "A one-time code from the authenticator app is required"


class InvalidTotp(IdentityError):
    code = "invalid_totp"
    status = 401
    title = "The one-time code is wrong or was already used"


class AccountLocked(IdentityError):
    code = "account_locked"
    status = 429
    title = "Too many failed logins; try again later"


class AccountDisabled(IdentityError):
    code = "account_disabled"
    status = 403
    title = "The account is disabled"
