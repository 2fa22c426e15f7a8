"""Every query of the identity service. Callers own the transaction; nothing here commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import CursorResult, Row, Table, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity.models import (
    AuthorizationCode,
    Client,
    LoginFailure,
    LoginSession,
    RefreshToken,
    RevokedAccessToken,
    SigningKey,
    TokenRevocation,
    TotpFactor,
    User,
    UserRole,
)
from paymesh.kernel.db import insert_ignoring_conflicts, is_postgres
from paymesh.kernel.reads import DirectReads, Query

revoked_access_tokens = cast(Table, RevokedAccessToken.__table__)


def _rowcount(result: object) -> int:
    return int(cast(CursorResult[object], result).rowcount)


# --- users -------------------------------------------------------------------------------


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    found = await session.scalars(select(User).where(User.username == username.lower()))
    return found.first()


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    found = await session.scalars(select(User).where(User.email == email.lower()))
    return found.first()


async def user_roles(session: AsyncSession, user_id: str) -> list[str]:
    rows = await session.scalars(
        select(UserRole.role).where(UserRole.user_id == user_id).order_by(UserRole.role)
    )
    return list(rows)


async def add_roles(
    session: AsyncSession, user_id: str, roles: Iterable[str], now: dt.datetime
) -> None:
    table = cast(Table, UserRole.__table__)
    for role in roles:
        statement = insert_ignoring_conflicts(session, table).values(
            user_id=user_id, role=role, created_at=now
        )
        await session.execute(statement)


async def confirmed_totp(session: AsyncSession, user_id: str) -> TotpFactor | None:
    factor = await session.get(TotpFactor, user_id)
    return factor if factor is not None and factor.confirmed else None


async def accept_totp_step(session: AsyncSession, user_id: str, step: int) -> bool:
    """Record `step` as used; False when it (or a later one) already was: no replays."""
    result = await session.execute(
        update(TotpFactor)
        .where(TotpFactor.user_id == user_id)
        .where(or_(TotpFactor.last_used_step.is_(None), TotpFactor.last_used_step < step))
        .values(last_used_step=step)
    )
    return _rowcount(result) == 1


# --- clients -----------------------------------------------------------------------------


async def get_client(session: AsyncSession, client_id: str) -> Client | None:
    return await session.get(Client, client_id)


# Built once: the OAuth2 endpoints read their client on every request.
_CLIENT_RECORD = select(Client.__table__).where(Client.__table__.c.id == bindparam("client_id"))


async def get_client_record(session: AsyncSession, client_id: str) -> Row[Any] | None:
    """The client's columns, read only: no ORM instance, no identity map (a fifth of a
    token grant's time went to loading the client as an entity)."""
    return (await session.execute(_CLIENT_RECORD, {"client_id": client_id})).first()


_CLIENT_RECORD_DIRECT = Query(_CLIENT_RECORD)


async def read_client_record(reads: DirectReads, client_id: str) -> SimpleNamespace | None:
    """The client's columns as committed, on the direct read path: a client credentials
    grant then opens no transaction at all (the exchange writes nothing for it)."""
    found = await reads.one(_CLIENT_RECORD_DIRECT, client_id=client_id)
    return None if found is None else SimpleNamespace(**found)


# --- authorization codes -----------------------------------------------------------------


async def get_code(session: AsyncSession, code_hash: str) -> AuthorizationCode | None:
    return await session.get(AuthorizationCode, code_hash)


async def use_code(
    session: AsyncSession, code_hash: str, family_id: str | None, now: dt.datetime
) -> bool:
    """Mark the code used; False when another request used it first."""
    result = await session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.code_hash == code_hash)
        .where(AuthorizationCode.used_at.is_(None))
        .values(used_at=now, family_id=family_id)
    )
    return _rowcount(result) == 1


async def purge_codes(session: AsyncSession, before: dt.datetime) -> None:
    await session.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at < before))


# --- refresh tokens ----------------------------------------------------------------------


async def get_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    found = await session.scalars(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    return found.first()


async def rotate_refresh_token(session: AsyncSession, token_id: str, now: dt.datetime) -> bool:
    """Mark the token rotated; False when it was rotated or revoked meanwhile."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id)
        .where(RefreshToken.rotated_at.is_(None))
        .where(RefreshToken.revoked_at.is_(None))
        .values(rotated_at=now)
    )
    return _rowcount(result) == 1


async def revoke_family(session: AsyncSession, family_id: str, now: dt.datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id)
        .where(RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_session_tokens(session: AsyncSession, session_id: str, now: dt.datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.session_id == session_id)
        .where(RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def purge_refresh_tokens(session: AsyncSession, before: dt.datetime) -> None:
    await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < before))


# --- revoked access tokens ---------------------------------------------------------------


async def revoke_access_token(
    session: AsyncSession, jti: str, expires_at: dt.datetime, now: dt.datetime
) -> None:
    statement = insert_ignoring_conflicts(session, revoked_access_tokens).values(
        jti=jti, expires_at=expires_at, revoked_at=now
    )
    await session.execute(statement)


async def access_token_revoked(session: AsyncSession, jti: str) -> bool:
    return await session.get(RevokedAccessToken, jti) is not None


async def purge_revoked_access_tokens(session: AsyncSession, before: dt.datetime) -> None:
    await session.execute(delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < before))


# --- login sessions ----------------------------------------------------------------------


async def get_login_session(session: AsyncSession, secret_hash: str) -> LoginSession | None:
    found = await session.scalars(
        select(LoginSession).where(LoginSession.secret_hash == secret_hash)
    )
    return found.first()


async def end_login_session(session: AsyncSession, session_id: str, now: dt.datetime) -> None:
    await session.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id)
        .where(LoginSession.ended_at.is_(None))
        .values(ended_at=now)
    )


async def purge_login_sessions(session: AsyncSession, before: dt.datetime) -> None:
    await session.execute(delete(LoginSession).where(LoginSession.expires_at < before))


# --- signing keys ------------------------------------------------------------------------


async def published_keys(session: AsyncSession, now: dt.datetime) -> Sequence[SigningKey]:
    """Keys still in JWKS, newest first."""
    found = await session.scalars(
        select(SigningKey)
        .where(or_(SigningKey.expires_at.is_(None), SigningKey.expires_at > now))
        .order_by(SigningKey.created_at.desc(), SigningKey.kid.desc())
    )
    return found.all()


async def retire_keys(
    session: AsyncSession, except_kid: str, now: dt.datetime, expires_at: dt.datetime
) -> None:
    await session.execute(
        update(SigningKey)
        .where(SigningKey.kid != except_kid)
        .where(SigningKey.retired_at.is_(None))
        .values(retired_at=now, expires_at=expires_at)
    )


# --- failed logins -----------------------------------------------------------------------


async def login_failures(session: AsyncSession, keys: Sequence[str]) -> list[LoginFailure]:
    found = await session.scalars(select(LoginFailure).where(LoginFailure.key.in_(keys)))
    return list(found)


async def clear_login_failures(session: AsyncSession, key: str) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.key == key))


# --- token revocations -------------------------------------------------------------------

token_revocations = cast(Table, TokenRevocation.__table__)


async def save_revocation(
    session: AsyncSession, kind: str, value: str, not_before: float, expires_at: float
) -> None:
    """Insert, or keep the later stamp and expiry of the one already there."""
    values = {"kind": kind, "value": value, "not_before": not_before, "expires_at": expires_at}
    dialect: Any = postgresql if is_postgres(session) else sqlite
    later = func.greatest if dialect is postgresql else func.max  # SQLite's scalar max()
    statement = dialect.insert(token_revocations).values(values)
    columns = token_revocations.c
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["kind", "value"],
            set_={
                "not_before": later(columns.not_before, statement.excluded.not_before),
                "expires_at": later(columns.expires_at, statement.excluded.expires_at),
            },
        )
    )


async def revocations_in_force(session: AsyncSession, now: float) -> Sequence[TokenRevocation]:
    found = await session.scalars(select(TokenRevocation).where(TokenRevocation.expires_at > now))
    return found.all()


async def purge_revocations(session: AsyncSession, before: float) -> None:
    await session.execute(delete(TokenRevocation).where(TokenRevocation.expires_at < before))
