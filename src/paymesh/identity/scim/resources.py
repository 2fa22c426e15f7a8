"""Identity rows as SCIM resources (RFC 7643) of the announced schemas, and back."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from scim2_models import Resource, ScimProvider

from paymesh.identity.models import User as UserRow
from paymesh.identity.scim.schema import GROUP_URN, USER_URN, model

ROLE_CREATED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
"""Roles are fixed: their groups have existed since the service began."""


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def user_version(row: UserRow, roles: Sequence[str]) -> str:
    digest = hashlib.sha256(f"{row.updated_at.isoformat()}|{','.join(roles)}".encode())
    return f'W/"{digest.hexdigest()[:16]}"'


def group_version(members: Sequence[UserRow]) -> str:
    digest = hashlib.sha256(",".join(sorted(row.id for row in members)).encode())
    return f'W/"{digest.hexdigest()[:16]}"'


class Resources:
    """Builds resources with the classes of the announced schemas."""

    def __init__(self, scim: ScimProvider) -> None:
        self.user_model = model(scim, "User")
        self.group_model = model(scim, "Group")

    def user(self, row: UserRow, roles: Sequence[str]) -> Resource[Any]:
        document: dict[str, Any] = {
            "schemas": [USER_URN],
            "id": row.id,
            "externalId": row.external_id,
            "userName": row.username,
            "active": row.status == "active",
            "meta": {
                "resourceType": "User",
                "created": _instant(row.created_at),
                "lastModified": _instant(row.updated_at),
                "version": user_version(row, roles),
            },
        }
        if row.given_name or row.family_name:
            formatted = " ".join(part for part in (row.given_name, row.family_name) if part)
            document["name"] = {
                "givenName": row.given_name,
                "familyName": row.family_name,
                "formatted": formatted,
            }
        if row.email:
            document["emails"] = [{"value": row.email, "primary": True}]
        if row.phone:
            document["phoneNumbers"] = [{"value": row.phone, "primary": True}]
        if roles:
            document["groups"] = [
                {"value": role, "display": role, "$ref": f"Groups/{role}"} for role in roles
            ]
        return self.user_model.model_validate(document)

    def group(self, role: str, members: Sequence[UserRow]) -> Resource[Any]:
        last_modified = max([ROLE_CREATED_AT, *(row.updated_at for row in members)])
        document: dict[str, Any] = {
            "schemas": [GROUP_URN],
            "id": role,
            "displayName": role,
            "meta": {
                "resourceType": "Group",
                "created": _instant(ROLE_CREATED_AT),
                "lastModified": _instant(last_modified),
                "version": group_version(members),
            },
        }
        if members:
            document["members"] = [
                {"value": row.id, "display": row.username, "$ref": f"Users/{row.id}"}
                for row in members
            ]
        return self.group_model.model_validate(document)


def primary(values: Sequence[Any] | None) -> str | None:
    """The primary value of a multi-valued attribute (emails, phoneNumbers), or the first."""
    if not values:
        return None
    chosen = next((value for value in values if getattr(value, "primary", False)), values[0])
    return str(chosen.value) if chosen.value else None


def user_fields(resource: Resource[Any]) -> dict[str, Any]:
    """The identity columns a SCIM User sets (userName and email are lowercased)."""
    user: Any = resource
    email = primary(user.emails)
    return {
        "username": str(user.user_name).lower(),
        "email": email.lower() if email else None,
        "given_name": user.name.given_name if user.name else None,
        "family_name": user.name.family_name if user.name else None,
        "phone": primary(user.phone_numbers),
        "external_id": user.external_id,
        "status": "disabled" if user.active is False else "active",
    }
