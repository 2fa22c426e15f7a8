"""Identity rows as SCIM resources (RFC 7643), and back."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from scim2_models import (
    Email,
    Group,
    GroupMember,
    GroupMembership,
    Meta,
    Name,
    PhoneNumber,
    Reference,
    User,
)

from paymesh.identity.models import User as UserRow

ROLE_CREATED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
"""Roles are fixed: their groups have existed since the service began."""


def user_version(row: UserRow, roles: Sequence[str]) -> str:
    digest = hashlib.sha256(f"{row.updated_at.isoformat()}|{','.join(roles)}".encode())
    return f'W/"{digest.hexdigest()[:16]}"'


def to_user(row: UserRow, roles: Sequence[str]) -> User[Any]:
    name = None
    if row.given_name or row.family_name:
        formatted = " ".join(part for part in (row.given_name, row.family_name) if part)
        name = Name(given_name=row.given_name, family_name=row.family_name, formatted=formatted)
    return User(
        id=row.id,
        external_id=row.external_id,
        user_name=row.username,
        name=name,
        active=row.status == "active",
        emails=[Email(value=row.email, primary=True)] if row.email else None,
        phone_numbers=[PhoneNumber(value=row.phone, primary=True)] if row.phone else None,
        groups=[
            GroupMembership(value=role, display=role, ref=Reference(f"Groups/{role}"))
            for role in roles
        ]
        or None,
        meta=Meta(
            resource_type="User",
            created=row.created_at,
            last_modified=row.updated_at,
            version=user_version(row, roles),
        ),
    )


def group_version(members: Sequence[UserRow]) -> str:
    digest = hashlib.sha256(",".join(sorted(row.id for row in members)).encode())
    return f'W/"{digest.hexdigest()[:16]}"'


def to_group(role: str, members: Sequence[UserRow]) -> Group:
    last_modified = max((row.updated_at for row in members), default=ROLE_CREATED_AT)
    return Group(
        id=role,
        display_name=role,
        members=[
            GroupMember(value=row.id, display=row.username, ref=Reference(f"Users/{row.id}"))
            for row in members
        ]
        or None,
        meta=Meta(
            resource_type="Group",
            created=ROLE_CREATED_AT,
            last_modified=max(last_modified, ROLE_CREATED_AT),
            version=group_version(members),
        ),
    )


def primary(values: Sequence[Any] | None) -> str | None:
    """The primary value of a multi-valued attribute (emails, phoneNumbers), or the first."""
    if not values:
        return None
    chosen = next((value for value in values if value.primary), values[0])
    return str(chosen.value) if chosen.value else None


def user_fields(resource: User[Any]) -> dict[str, Any]:
    """The identity columns a SCIM User sets (userName and email are lowercased)."""
    email = primary(resource.emails)
    return {
        "username": str(resource.user_name).lower(),
        "email": email.lower() if email else None,
        "given_name": resource.name.given_name if resource.name else None,
        "family_name": resource.name.family_name if resource.name else None,
        "phone": primary(resource.phone_numbers),
        "external_id": resource.external_id,
        "status": "disabled" if resource.active is False else "active",
    }
