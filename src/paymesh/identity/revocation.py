"""Identity's side of token revocation: record, announce and restore revocations.

Every place that ends tokens early (RFC 7009 revocation, logout, refresh-token or code
reuse, a user disabled, deleted, demoted or changing their password, a client disabled,
deleted or given a new secret) calls `revoke(session, kind, value)` inside its own
transaction. That writes the revocation row and an `identity.tokens.revoked` outbox event
in the same transaction; after the commit the revocation is in force in this process at
once (`TokenRevoker.after_commit`), and the event's consumer hands it to the shared feed
for every other process (`paymesh.kernel.revocation`). On start, identity restores what
is still in force from its table.

The revoker travels with identity's database sessions (`session.info`), so a repository
caller deep in the OAuth2 machinery needs no extra parameter to reach it.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity import repository
from paymesh.kernel.db import Database
from paymesh.kernel.events import CloudEvent, Outbox
from paymesh.kernel.oidc import CLOCK_SKEW_SECONDS
from paymesh.kernel.revocation import Kind, Revocation, RevocationRegistry

COMMIT_MARGIN_SECONDS = 2.0
"""A stamp lies this far ahead of the moment it is written: a login that read the user
before the revoking transaction committed gets a token issued before the stamp."""

REVOKER_KEY = "identity.token_revoker"
PENDING_KEY = "identity.pending_revocations"
EVENT_TYPE = "identity.tokens.revoked"


class TokenRevoker:
    def __init__(
        self, outbox: Outbox, registry: RevocationRegistry, token_lifetime_seconds: float
    ) -> None:
        self.outbox = outbox
        self.registry = registry
        self.token_lifetime_seconds = token_lifetime_seconds

    def attach(self, database: Database) -> None:
        """Make this revoker reachable from every session of identity's database."""
        database.sessions.configure(info={REVOKER_KEY: self})
        database.on_commit(self.after_commit)

    async def revoke(
        self, session: AsyncSession, kind: Kind, value: str, expires_at: float | None = None
    ) -> Revocation:
        now = time.time()
        lifetime = self.token_lifetime_seconds + CLOCK_SKEW_SECONDS
        item = Revocation(
            kind,
            value,
            not_before=now + COMMIT_MARGIN_SECONDS,
            expires_at=expires_at or now + lifetime + COMMIT_MARGIN_SECONDS,
        )
        await repository.save_revocation(session, kind, value, item.not_before, item.expires_at)
        await self.outbox.add(session, EVENT_TYPE, {"revocations": [item.as_dict()]}, item.key)
        session.info.setdefault(PENDING_KEY, []).append(item)
        return item

    def after_commit(self, session: AsyncSession) -> None:
        pending: list[Revocation] | None = session.info.pop(PENDING_KEY, None)
        if pending:
            self.registry.apply(pending)

    def stamp_covering(self, subject: str, client_id: str) -> float:
        """The latest stamp covering `subject` or `client_id` (0 when none): a new token
        is issued no earlier (see `COMMIT_MARGIN_SECONDS`), so a login right after a
        revocation is not refused."""
        return max(
            self.registry.not_before("subject", subject),
            self.registry.not_before("client", client_id),
        )

    async def restore(self, database: Database) -> None:
        """Put every revocation still in force back in effect (after a restart)."""
        async with database.transaction() as session:
            rows = await repository.revocations_in_force(session, time.time())
            items = [
                Revocation.from_dict(
                    {
                        "kind": row.kind,
                        "value": row.value,
                        "not_before": row.not_before,
                        "expires_at": row.expires_at,
                    }
                )
                for row in rows
            ]
        await self.registry.publish(items)

    async def on_event(self, _session: AsyncSession, event: CloudEvent) -> None:
        """Consumer of `identity.tokens.revoked`: to the shared feed (and here)."""
        entries: list[Any] = list(event.data.get("revocations") or [])
        await self.registry.publish([Revocation.from_dict(entry) for entry in entries])


CLIENT_RECORD_MAX_AGE_SECONDS = 60.0
"""The longest the token endpoint keeps a client's registration before reading it again
(`provider.server.ClientCache`), notice or not."""


async def client_changed(session: AsyncSession, client_id: str) -> None:
    """Tell every process that `client_id`'s registration (status, secret, tier, ...)
    changes in this transaction: a copy kept in memory from before is read again. The
    notice outlives the oldest copy it can make stale."""
    now = time.time()
    await revoke(
        session,
        "client_record",
        client_id,
        expires_at=now + COMMIT_MARGIN_SECONDS + 2 * CLIENT_RECORD_MAX_AGE_SECONDS,
    )


def revoker_of(session: AsyncSession) -> TokenRevoker:
    revoker = session.info.get(REVOKER_KEY)
    if not isinstance(revoker, TokenRevoker):
        raise RuntimeError("identity's sessions carry no TokenRevoker (see identity.app)")
    return revoker


async def revoke(
    session: AsyncSession, kind: Kind, value: str, expires_at: float | None = None
) -> Revocation:
    """End, from now on, every access token that (`kind`, `value`) covers."""
    return await revoker_of(session).revoke(session, kind, value, expires_at)
