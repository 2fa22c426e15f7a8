"""Self-service account rules: registration, profile, password change and TOTP. No HTTP,
no SQL strings; the caller owns the transaction."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity import errors as identity_errors
from paymesh.identity import repository as identity_repository
from paymesh.identity import revocation
from paymesh.identity import service as identity_service
from paymesh.identity.accounts import errors, repository, totp
from paymesh.identity.accounts.policy import check_password
from paymesh.identity.accounts.schemas import (
    PasswordChange,
    ProfileUpdate,
    RecoveryCodes,
    Registration,
    TotpEnrolment,
)
from paymesh.identity.models import User as UserRow
from paymesh.identity.schemas import Contact, User, UserCreate
from paymesh.identity.security import Cipher, hash_password, verify_password
from paymesh.kernel.db import utcnow
from paymesh.kernel.events import Outbox


def unique_violation(error: IntegrityError) -> identity_errors.IdentityError:
    """The conflict a unique constraint of `identity_user` reports (checked first, but a
    concurrent transaction can still win between the check and the insert)."""
    if "email" in str(error.orig).lower():
        return identity_errors.EmailTaken(detail="a user with this email exists")
    return identity_errors.UsernameTaken(detail="a user with this username exists")


async def register(session: AsyncSession, outbox: Outbox, data: Registration) -> User:
    password = data.password.get_secret_value()
    check_password(password, username=data.username, email=data.email)
    fields = data.model_dump(exclude={"password"})
    try:
        user = await identity_service.create_user(
            session, UserCreate(**fields, password=password, roles=["customer"])
        )
    except IntegrityError as error:  # a concurrent registration won the race
        raise unique_violation(error) from None
    await outbox.add(
        session, "identity.user.registered", {"user_id": user.id, "roles": user.roles}, user.id
    )
    return user


async def current_user(session: AsyncSession, user_id: str) -> UserRow:
    """The active user a token's subject names, or `NotAUser`."""
    row = await identity_repository.get_user(session, user_id)
    if row is None:
        raise errors.NotAUser()
    if row.status != "active":
        raise identity_errors.AccountDisabled()
    return row


async def contact(session: AsyncSession, user_id: str) -> Contact:
    row = await identity_repository.get_user(session, user_id)
    if row is None:
        raise identity_errors.UserNotFound()
    return Contact(
        user_id=row.id,
        email=row.email,
        email_verified=row.email_verified,
        phone=row.phone,
        active=row.status == "active",
        customer="customer" in await identity_repository.user_roles(session, row.id),
    )


async def contact_by_username(session: AsyncSession, username: str) -> Contact:
    row = await identity_repository.get_user_by_username(session, username)
    if row is None:
        raise identity_errors.UserNotFound()
    return await contact(session, row.id)


async def user_view(session: AsyncSession, row: UserRow) -> User:
    return identity_service.user_schema(row, await identity_repository.user_roles(session, row.id))


async def update_profile(
    session: AsyncSession, outbox: Outbox, row: UserRow, data: ProfileUpdate
) -> User:
    changes = data.model_dump(include=data.model_fields_set)
    if "email" in changes and changes["email"] is not None:
        email = str(changes["email"]).lower()
        other = await identity_repository.get_user_by_email(session, email)
        if other is not None and other.id != row.id:
            raise identity_errors.EmailTaken(detail="a user with this email exists")
        if email != row.email:
            row.email_verified = False
        changes["email"] = email
    elif "email" in changes:
        row.email_verified = False
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    try:
        await session.flush()
    except IntegrityError as error:
        raise unique_violation(error) from None
    await outbox.add(
        session, "identity.user.updated", {"user_id": row.id, "fields": sorted(changes)}, row.id
    )
    return await user_view(session, row)


async def change_password(
    session: AsyncSession, outbox: Outbox, row: UserRow, data: PasswordChange
) -> None:
    """Check the current password, set the new one, and sign the user out everywhere
    (every refresh token of theirs is revoked)."""
    current = data.current_password.get_secret_value()
    if not await asyncio.to_thread(verify_password, current, row.password_hash):
        raise errors.WrongCurrentPassword()
    new = data.new_password.get_secret_value()
    check_password(new, username=row.username, email=row.email)
    if new == current:
        raise errors.PasswordTooWeak(detail="the new password must differ from the current one")
    row.password_hash = await asyncio.to_thread(hash_password, new)
    now = utcnow()
    row.updated_at = now
    await session.flush()
    revoked = await repository.revoke_user_refresh_tokens(session, row.id, now)
    await revocation.revoke(session, "subject", row.id)
    await outbox.add(
        session,
        "identity.user.password_changed",
        {"user_id": row.id, "refresh_tokens_revoked": revoked},
        row.id,
    )


async def enrol_totp(
    session: AsyncSession, outbox: Outbox, cipher: Cipher, row: UserRow
) -> TotpEnrolment:
    """Start (or restart) an enrolment; login asks for codes only once it is confirmed."""
    existing = await repository.get_totp(session, row.id)
    if existing is not None and existing.confirmed:
        raise errors.TotpAlreadyEnabled()
    if existing is not None:
        await repository.delete_totp(session, row.id)
        await session.flush()
    factor, secret = totp.new_factor(row.id, cipher)
    session.add(factor)
    await session.flush()
    await outbox.add(session, "identity.user.totp_enrolled", {"user_id": row.id}, row.id)
    return TotpEnrolment(
        secret=secret, otpauth_uri=totp.provisioning_uri(secret, row.email or row.username)
    )


async def confirm_totp(
    session: AsyncSession, outbox: Outbox, cipher: Cipher, row: UserRow, code: str
) -> RecoveryCodes:
    factor = await repository.get_totp(session, row.id)
    if factor is None or factor.confirmed:
        raise errors.TotpNotEnrolled()
    step = totp.matching_step(totp.totp_for(factor, cipher), totp.normalize(code))
    if step is None:
        raise errors.InvalidTotpCode()
    now = utcnow()
    factor.confirmed = True
    factor.confirmed_at = now
    factor.last_used_step = step
    await session.flush()
    codes = await totp.issue_recovery_codes(session, row.id)
    await outbox.add(session, "identity.user.totp_enabled", {"user_id": row.id}, row.id)
    return RecoveryCodes(recovery_codes=codes)


async def disable_totp(
    session: AsyncSession, outbox: Outbox, cipher: Cipher, row: UserRow, code: str
) -> None:
    factor = await repository.get_totp(session, row.id)
    if factor is None or not factor.confirmed:
        raise errors.TotpNotEnabled()
    if not await totp.verify_second_factor(session, cipher, factor, code):
        raise errors.InvalidTotpCode()
    await repository.delete_totp(session, row.id)
    await outbox.add(session, "identity.user.totp_disabled", {"user_id": row.id}, row.id)
