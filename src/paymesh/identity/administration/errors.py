"""Errors of the admin API, named after the condition."""

from __future__ import annotations

from paymesh.identity.errors import IdentityError


class PublicClientHasNoSecret(IdentityError):
    code = "public_client_has_no_secret"
    status = 409
    title = "A public client has no secret to rotate"


class AdminCannotLockThemselvesOut(IdentityError):
    code = "admin_cannot_lock_themselves_out"
    status = 409
    title = "An admin may not disable themselves or drop their own admin role"
