"""Admin rules for clients and users. Every change writes an `identity.*` outbox event
with the acting admin (`actor`), in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity import errors as identity_errors
from paymesh.identity import repository as identity_repository
from paymesh.identity import revocation
from paymesh.identity import service as identity_service
from paymesh.identity.accounts import repository as accounts_repository
from paymesh.identity.administration import errors, repository
from paymesh.identity.administration.schemas import ClientSecret, Page
from paymesh.identity.models import Client as ClientRow
from paymesh.identity.models import User as UserRow
from paymesh.identity.schemas import Client, ClientCreate, ClientCreated, RateLimitTier, User
from paymesh.identity.security import new_secret, secret_hash
from paymesh.kernel.db import utcnow
from paymesh.kernel.events import Outbox
from paymesh.kernel.pagination import decode_cursor, encode_cursor


class Admin:
    """The admin operations of one request: its transaction, outbox and acting admin."""

    def __init__(self, session: AsyncSession, outbox: Outbox, actor: str) -> None:
        self.session = session
        self.outbox = outbox
        self.actor = actor

    async def _record(self, event_type: str, subject: str, **data: Any) -> None:
        await self.outbox.add(self.session, event_type, {"actor": self.actor, **data}, subject)

    # --- clients -------------------------------------------------------------------------

    async def create_client(self, data: ClientCreate) -> ClientCreated:
        created = await identity_service.create_client(self.session, data)
        await self._record(
            "identity.client.created",
            created.client_id,
            client_id=created.client_id,
            public=created.public,
            grant_types=created.grant_types,
            roles=created.roles,
            rate_limit_tier=created.rate_limit_tier.value,
        )
        return created

    async def list_clients(self, limit: int, cursor: str | None) -> Page[Client]:
        after = decode_cursor(cursor) if cursor else None
        rows = await repository.list_clients(self.session, limit + 1, after)
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return Page[Client](
            data=[identity_service.client_schema(row) for row in page], next_cursor=next_cursor
        )

    async def _client(self, client_id: str) -> ClientRow:
        row = await identity_repository.get_client(self.session, client_id)
        if row is None:
            raise identity_errors.ClientNotFound(detail=f"no client {client_id!r}")
        return row

    async def get_client(self, client_id: str) -> Client:
        return identity_service.client_schema(await self._client(client_id))

    async def set_client_status(self, client_id: str, status: str) -> Client:
        """Disable (its refresh tokens are revoked; it gets no new tokens) or enable."""
        row = await self._client(client_id)
        now = utcnow()
        row.status = status
        row.updated_at = now
        await self.session.flush()
        await revocation.client_changed(self.session, client_id)
        if status == "disabled":
            await repository.revoke_client_refresh_tokens(self.session, client_id, now)
            await revocation.revoke(self.session, "client", client_id)
        await self._record(f"identity.client.{status}", client_id, client_id=client_id)
        return identity_service.client_schema(row)

    async def delete_client(self, client_id: str) -> None:
        await self._client(client_id)
        await repository.revoke_client_refresh_tokens(self.session, client_id, utcnow())
        await revocation.revoke(self.session, "client", client_id)
        await repository.delete_client(self.session, client_id)
        await revocation.client_changed(self.session, client_id)
        await self._record("identity.client.deleted", client_id, client_id=client_id)

    async def set_client_rate_limit_tier(self, client_id: str, tier: RateLimitTier) -> Client:
        """Change the tier the gateway limits the client by. Its tokens already issued keep
        their `tier` claim until they expire; the next token it gets carries the new one."""
        before, client = await identity_service.set_client_rate_limit_tier(
            self.session, client_id, tier
        )
        await self._record(
            "identity.client.rate_limit_tier_changed",
            client_id,
            client_id=client_id,
            before=before.value,
            after=tier.value,
        )
        return client

    async def rotate_client_secret(self, client_id: str) -> ClientSecret:
        """A new secret replaces the old one at once; shown here and never again."""
        row = await self._client(client_id)
        if row.secret_hash is None:
            raise errors.PublicClientHasNoSecret()
        secret = new_secret()
        row.secret_hash = secret_hash(secret)
        row.updated_at = utcnow()
        await self.session.flush()
        await revocation.client_changed(self.session, client_id)
        # The old secret may have leaked: what was obtained with it ends too.
        await revocation.revoke(self.session, "client", client_id)
        await self._record("identity.client.secret_rotated", client_id, client_id=client_id)
        return ClientSecret(client_id=client_id, client_secret=secret)

    # --- users ---------------------------------------------------------------------------

    async def list_users(self, limit: int, cursor: str | None) -> Page[User]:
        after = decode_cursor(cursor) if cursor else None
        rows = await accounts_repository.list_users(self.session, limit + 1, after)
        page = rows[:limit]
        roles = await accounts_repository.roles_of(self.session, [row.id for row in page])
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return Page[User](
            data=[identity_service.user_schema(row, roles[row.id]) for row in page],
            next_cursor=next_cursor,
        )

    async def _user(self, user_id: str) -> UserRow:
        row = await identity_repository.get_user(self.session, user_id)
        if row is None:
            raise identity_errors.UserNotFound(detail=f"no user {user_id!r}")
        return row

    async def get_user(self, user_id: str) -> User:
        row = await self._user(user_id)
        roles = await identity_repository.user_roles(self.session, user_id)
        return identity_service.user_schema(row, roles)

    async def set_user_status(self, user_id: str, status: str) -> User:
        """Disable (signs the user out: refresh tokens revoked, no new login) or enable."""
        row = await self._user(user_id)
        if user_id == self.actor and status == "disabled":
            raise errors.AdminCannotLockThemselvesOut()
        now = utcnow()
        row.status = status
        row.updated_at = now
        await self.session.flush()
        if status == "disabled":
            await accounts_repository.revoke_user_refresh_tokens(self.session, user_id, now)
            await revocation.revoke(self.session, "subject", user_id)
        await self._record(f"identity.user.{status}", user_id, user_id=user_id)
        return await self.get_user(user_id)

    async def set_user_roles(self, user_id: str, roles: list[str]) -> User:
        row = await self._user(user_id)
        if user_id == self.actor and "admin" not in roles:
            raise errors.AdminCannotLockThemselvesOut()
        before = await identity_repository.user_roles(self.session, user_id)
        after = sorted(set(roles))
        now = utcnow()
        await accounts_repository.set_roles(self.session, user_id, after, now)
        row.updated_at = now
        await self.session.flush()
        if after != before:
            # Tokens carry the roles they were issued with: those must not outlive a change.
            await revocation.revoke(self.session, "subject", user_id)
        await self._record(
            "identity.user.roles_changed", user_id, user_id=user_id, before=before, after=after
        )
        return await self.get_user(user_id)
