"""Profile rules: one profile per identity user, made on identity's events or on first use;
the customer edits it; services and operators read it. No HTTP, no SQL strings; the
caller owns the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity.schemas import User
from paymesh.kernel.config import ProfilesSettings
from paymesh.kernel.db import utcnow
from paymesh.kernel.events import Outbox
from paymesh.profiles import errors, repository
from paymesh.profiles.models import Profile as ProfileRow
from paymesh.profiles.schemas import Address, Kyc, Limits, Profile, ProfileUpdate
from paymesh.providers.schemas import KycReason, plain_text

PROFILE_CREATED = "profiles.profile.created"
PROFILE_UPDATED = "profiles.profile.updated"
LEVEL_RANK = {"none": 0, "basic": 1, "full": 2}
LEGAL_IDENTITY = ("given_name", "family_name", "date_of_birth")
ADDRESS_COLUMNS = {
    "line1": "address_line1",
    "line2": "address_line2",
    "city": "city",
    "region": "region",
    "postal_code": "postal_code",
}
NAME_MAX_LENGTH = 100


def legal_name(row: ProfileRow) -> str | None:
    """ "Given Family" for display, or None when neither is known."""
    return " ".join(part for part in (row.given_name, row.family_name) if part) or None


def _address(row: ProfileRow) -> Address | None:
    if row.address_line1 is None or row.city is None:
        return None
    return Address(
        line1=row.address_line1,
        line2=row.address_line2,
        city=row.city,
        region=row.region,
        postal_code=row.postal_code,
    )


def profile_view(row: ProfileRow) -> Profile:
    return Profile(
        user_id=row.user_id,
        legal_name=legal_name(row),
        given_name=row.given_name,
        family_name=row.family_name,
        date_of_birth=row.date_of_birth,
        address=_address(row),
        country=row.country,
        phone=row.phone,
        email=row.email,
        kyc=Kyc(
            status=row.kyc_status,
            level=row.kyc_level,
            reasons=[KycReason.model_validate(reason) for reason in row.kyc_reasons],
            submission_id=row.kyc_submission_id,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _usable_name(value: str | None) -> str | None:
    """A name from identity, if it fits a profile's rules (identity allows longer ones)."""
    if value is None or not value.strip() or len(value.strip()) > NAME_MAX_LENGTH:
        return None
    try:
        return plain_text(value.strip())
    except ValueError:
        return None


class Profiles:
    def __init__(self, settings: ProfilesSettings, outbox: Outbox) -> None:
        self.settings = settings
        self.outbox = outbox

    async def ensure(self, session: AsyncSession, user_id: str) -> ProfileRow:
        """The user's profile, locked for this transaction; made blank if missing."""
        row = await repository.get_profile(session, user_id, for_update=True)
        if row is not None:
            return row
        if await repository.insert_profile(session, user_id, utcnow()):
            await self.outbox.add(session, PROFILE_CREATED, {"user_id": user_id}, user_id)
        row = await repository.get_profile(session, user_id, for_update=True)
        assert row is not None
        return row

    async def find(self, session: AsyncSession, user_id: str) -> ProfileRow | None:
        return await repository.get_profile(session, user_id)

    async def get(self, session: AsyncSession, user_id: str) -> ProfileRow:
        row = await repository.get_profile(session, user_id)
        if row is None:
            raise errors.ProfileNotFound()
        return row

    def copy_from_identity(self, row: ProfileRow, user: User) -> None:
        """Identity owns the email; its names and phone only fill a profile's blanks."""
        if user.id != row.user_id:
            return
        now = utcnow()
        row.email = user.email
        if row.given_name is None and row.family_name is None:
            row.given_name = _usable_name(user.given_name)
            row.family_name = _usable_name(user.family_name)
        if row.phone is None and user.phone is not None and len(user.phone) <= 16:
            row.phone = user.phone
        row.identity_synced_at = now
        row.updated_at = now

    async def update(self, session: AsyncSession, user_id: str, body: ProfileUpdate) -> ProfileRow:
        row = await self.ensure(session, user_id)
        changes: dict[str, Any] = body.model_dump(include=body.model_fields_set)
        if row.kyc_level != "none":
            for name in LEGAL_IDENTITY:
                if name in changes and changes[name] != getattr(row, name):
                    raise errors.VerifiedIdentityLocked()
        address = changes.pop("address", ...)
        if address is not ...:
            for field, column in ADDRESS_COLUMNS.items():
                changes[column] = None if address is None else address.get(field)
        changed = sorted(name for name, value in changes.items() if getattr(row, name) != value)
        for name in changed:
            setattr(row, name, changes[name])
        if changed:
            row.updated_at = utcnow()
            fields = sorted({_public_field(name) for name in changed})
            await self.outbox.add(
                session, PROFILE_UPDATED, {"user_id": user_id, "fields": fields}, user_id
            )
        return row

    async def identity_changed(self, session: AsyncSession, user_id: str) -> None:
        """Identity's copy changed: re-read it on the user's next visit."""
        row = await repository.get_profile(session, user_id, for_update=True)
        if row is not None:
            row.identity_synced_at = None

    def limits(self, row: ProfileRow) -> Limits:
        level = row.kyc_level
        limits = self.settings.limits[level]  # type: ignore[index]
        return Limits(
            user_id=row.user_id,
            kyc_level=level,
            per_transaction=limits.per_transaction,
            daily=limits.daily,
            monthly=limits.monthly,
        )


def _public_field(column: str) -> str:
    return "address" if column in ADDRESS_COLUMNS.values() else column
