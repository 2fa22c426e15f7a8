"""The scim2-server storage (`AsyncScimStorage`) over the identity tables.

Each operation is one transaction of its own: the SCIM handler reads, applies a PATCH,
then writes; `expected_version` guards that write. Writes go through the identity
repositories and add `identity.*` outbox events naming the admin (`ACTOR`).
"""

from __future__ import annotations

import asyncio
import contextvars
import re
from typing import Any, Union

from scim2_models import (
    InvalidValueException,
    MutabilityException,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    ScimProvider,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import AsyncScimStorage, SearchPage
from scim2_server.utils import parametrize
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity import repository as identity_repository
from paymesh.identity import revocation
from paymesh.identity.accounts import errors as account_errors
from paymesh.identity.accounts import repository as accounts_repository
from paymesh.identity.accounts.policy import check_password
from paymesh.identity.models import ROLES
from paymesh.identity.models import User as UserRow
from paymesh.identity.scim import resources
from paymesh.identity.scim.resources import Resources
from paymesh.identity.security import hash_password
from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import new_id

ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("scim_actor", default=None)

_EQUALITY = re.compile(r'^\s*(userName|emails(?:\.value)?)\s+eq\s+"([^"\\]*)"\s*$', re.IGNORECASE)
"""Filters answered with an indexed query first (the SCIM filter is still applied)."""


class IdentityScimStorage(AsyncScimStorage):
    def __init__(self, database: Database, outbox: Outbox, scim: ScimProvider) -> None:
        self.database = database
        self.outbox = outbox
        self.resources = Resources(scim)

    async def _record(
        self, session: AsyncSession, event_type: str, subject: str, **data: Any
    ) -> None:
        data = {"actor": ACTOR.get(), "via": "scim", **data}
        await self.outbox.add(session, event_type, data, subject)

    # --- reads ---------------------------------------------------------------------------

    async def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        async with self.database.transaction() as session:
            if resource_type.name == "Group":
                return await self._group(session, resource_id)
            return await self._user(session, resource_id)

    async def _user(self, session: AsyncSession, user_id: str) -> Resource[Any]:
        row = await identity_repository.get_user(session, user_id)
        if row is None:
            raise NotFoundException(detail=f"no user {user_id}")
        return self.resources.user(row, await identity_repository.user_roles(session, user_id))

    async def _group(self, session: AsyncSession, role: str) -> Resource[Any]:
        if role not in ROLES:
            raise NotFoundException(detail=f"no group {role}")
        return self.resources.group(role, await accounts_repository.members_of(session, role))

    async def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        found: list[Resource[Any]] = []
        async with self.database.transaction() as session:
            for resource_type in resource_types:
                if resource_type.name == "Group":
                    found += [await self._group(session, role) for role in ROLES]
                else:
                    found += await self._users(session, search_request)
        scim_filter = search_request.filter
        if scim_filter is not None:
            if not scim_filter.models and found:
                models = tuple(dict.fromkeys(type(resource) for resource in found))
                scim_filter = parametrize(ScimFilter, Union[models])(str(scim_filter))  # noqa: UP007
            found = [resource for resource in found if scim_filter.match(resource)]
        start = search_request.start_index_0 or 0
        stop = None if search_request.count is None else start + search_request.count
        return SearchPage(len(found), found[start:stop])

    async def _users(
        self, session: AsyncSession, search_request: SearchRequest[Any]
    ) -> list[Resource[Any]]:
        """Users oldest first; narrowed in SQL for `userName eq` and `emails.value eq`."""
        statement = select(UserRow).order_by(UserRow.created_at, UserRow.id)
        match = _EQUALITY.match(str(search_request.filter or ""))
        if match:
            column = UserRow.username if match[1].lower() == "username" else UserRow.email
            statement = statement.where(column == match[2].lower())
        rows = list(await session.scalars(statement))
        roles = await accounts_repository.roles_of(session, [row.id for row in rows])
        return [self.resources.user(row, roles[row.id]) for row in rows]

    # --- writes --------------------------------------------------------------------------

    async def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        if resource_type.name == "Group":
            name = getattr(resource, "display_name", None)
            if name in ROLES:
                raise UniquenessException(detail=f"group {name} exists (groups are the roles)")
            raise InvalidValueException(detail=f"groups are the roles: {', '.join(ROLES)}")
        fields = resources.user_fields(resource)
        async with self.database.transaction() as session:
            await self._check_unique(session, fields, None)
            now = utcnow()
            row = UserRow(
                id=new_id("usr"),
                email_verified=False,
                password_hash=await self._password_hash(
                    resource, fields["username"], fields["email"]
                ),
                created_at=now,
                updated_at=now,
                **fields,
            )
            session.add(row)
            await self._flush(session)
            await self._record(session, "identity.user.created", row.id, user_id=row.id)
            return self.resources.user(row, [])

    async def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        async with self.database.transaction() as session:
            if resource_type.name == "Group":
                return await self._update_group(session, resource, expected_version)
            row = await identity_repository.get_user(session, str(resource.id))
            if row is None:
                raise NotFoundException(detail=f"no user {resource.id}")
            roles = await identity_repository.user_roles(session, row.id)
            self._check_version(resources.user_version(row, roles), expected_version)
            fields = resources.user_fields(resource)
            await self._check_unique(session, fields, row.id)
            changed = sorted(name for name, value in fields.items() if getattr(row, name) != value)
            if "email" in changed:
                row.email_verified = False
            for name, value in fields.items():
                setattr(row, name, value)
            if getattr(resource, "password", None):
                row.password_hash = await self._password_hash(resource, row.username, row.email)
                changed.append("password")
            now = utcnow()
            row.updated_at = now
            await self._flush(session)
            if fields["status"] == "disabled" and "status" in changed:
                await accounts_repository.revoke_user_refresh_tokens(session, row.id, now)
            if {"status", "password"} & set(changed):
                await revocation.revoke(session, "subject", row.id)
            await self._record(
                session, "identity.user.updated", row.id, user_id=row.id, fields=changed
            )
            return self.resources.user(row, roles)

    async def _update_group(
        self, session: AsyncSession, resource: Resource[Any], expected_version: str | None
    ) -> Resource[Any]:
        role = str(resource.id)
        current: Any = await self._group(session, role)
        self._check_version(current.meta.version, expected_version)
        if getattr(resource, "display_name", role) != role:
            raise MutabilityException(detail="a group's displayName is its role and cannot change")
        before = {str(member.value) for member in current.members or []}
        after = {str(member.value) for member in getattr(resource, "members", None) or []}
        now = utcnow()
        for user_id in sorted(after - before):
            if await identity_repository.get_user(session, user_id) is None:
                raise InvalidValueException(detail=f"no user {user_id}")
            await identity_repository.add_roles(session, user_id, [role], now)
        for user_id in sorted(before - after):
            await accounts_repository.remove_role(session, user_id, role)
        changed = sorted(before ^ after)
        for user_id in changed:
            row = await identity_repository.get_user(session, user_id)
            if row is not None:
                row.updated_at = now
                await revocation.revoke(session, "subject", user_id)
        await session.flush()
        await self._record(
            session,
            "identity.group.members_changed",
            role,
            role=role,
            added=sorted(after - before),
            removed=sorted(before - after),
        )
        return await self._group(session, role)

    async def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        if resource_type.name == "Group":
            if resource_id not in ROLES:
                raise NotFoundException(detail=f"no group {resource_id}")
            raise MutabilityException(detail="groups are the fixed roles and cannot be deleted")
        async with self.database.transaction() as session:
            row = await identity_repository.get_user(session, resource_id)
            if row is None:
                raise NotFoundException(detail=f"no user {resource_id}")
            roles = await identity_repository.user_roles(session, row.id)
            self._check_version(resources.user_version(row, roles), expected_version)
            await accounts_repository.revoke_user_refresh_tokens(session, row.id, utcnow())
            await revocation.revoke(session, "subject", row.id)
            await session.delete(row)
            await session.flush()
            await self._record(session, "identity.user.deleted", resource_id, user_id=resource_id)

    # --- rules ---------------------------------------------------------------------------

    @staticmethod
    async def _flush(session: AsyncSession) -> None:
        """A concurrent write can take a unique value between the check and the flush."""
        try:
            await session.flush()
        except IntegrityError:
            raise UniquenessException(detail="userName or email is taken") from None

    @staticmethod
    def _check_version(current: str | None, expected: str | None) -> None:
        if expected is not None and current != expected:
            raise PreconditionFailedException(detail="the resource changed meanwhile")

    @staticmethod
    async def _check_unique(
        session: AsyncSession, fields: dict[str, Any], user_id: str | None
    ) -> None:
        other = await identity_repository.get_user_by_username(session, fields["username"])
        if other is not None and other.id != user_id:
            raise UniquenessException(detail="userName is taken")
        if fields["email"]:
            other = await identity_repository.get_user_by_email(session, fields["email"])
            if other is not None and other.id != user_id:
                raise UniquenessException(detail="the email is taken")

    @staticmethod
    async def _password_hash(
        resource: Resource[Any], username: str, email: str | None
    ) -> str | None:
        password = getattr(resource, "password", None)
        if not password:
            return None
        try:
            check_password(password, username=username, email=email)
        except account_errors.PasswordTooWeak as error:
            raise InvalidValueException(detail=error.detail) from None
        return await asyncio.to_thread(hash_password, password)
