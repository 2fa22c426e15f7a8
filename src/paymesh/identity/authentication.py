"""Who is logging in: password, then TOTP when enrolled, behind a brute-force lock.

Failed logins are counted per username and per client address; reaching the threshold
within the window locks that key for `lockout_seconds`. A locked key is refused before the
password is even checked. Failures are recorded in a transaction of their own, after the
attempt's transaction is rolled back (`LoginAttempt.record_failure`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Table, case, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity import errors, repository
from paymesh.identity.accounts.totp import verify_second_factor
from paymesh.identity.models import LoginFailure, User
from paymesh.identity.security import Cipher, verify_password
from paymesh.kernel.config import IdentitySettings
from paymesh.kernel.db import insert_ignoring_conflicts, utcnow
from paymesh.kernel.metrics import LOCKOUTS, LOGIN_FAILURES


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    totp: str | None
    address: str


def failure_keys(username: str, address: str) -> list[str]:
    return [f"user:{username.lower()[:150]}", f"address:{address[:64]}"]


class Authenticator:
    def __init__(self, settings: IdentitySettings, cipher: Cipher) -> None:
        self.settings = settings
        self.cipher = cipher

    async def check_lock(self, session: AsyncSession, keys: list[str]) -> None:
        now = utcnow()
        for row in await repository.login_failures(session, keys):
            if row.locked_until is not None and row.locked_until > now:
                raise errors.AccountLocked(
                    retry_after_seconds=int((row.locked_until - now).total_seconds()) + 1
                )

    async def login(self, session: AsyncSession, credentials: Credentials) -> User:
        """The user these credentials prove, or an `IdentityError` (caller records failures
        of `InvalidCredentials` / `InvalidTotp` with `record_failure`)."""
        keys = failure_keys(credentials.username, credentials.address)
        await self.check_lock(session, keys)
        user = await repository.get_user_by_username(session, credentials.username)
        ok = await asyncio.to_thread(
            verify_password, credentials.password, user.password_hash if user else None
        )
        if user is None or not ok:
            raise errors.InvalidCredentials()
        if user.status != "active":
            raise errors.AccountDisabled()
        await self._second_factor(session, user, credentials.totp)
        await repository.clear_login_failures(session, keys[0])
        return user

    async def has_totp(self, session: AsyncSession, user_id: str) -> bool:
        return await repository.confirmed_totp(session, user_id) is not None

    async def _second_factor(self, session: AsyncSession, user: User, code: str | None) -> None:
        factor = await repository.confirmed_totp(session, user.id)
        if factor is None:
            return
        if not (code or "").strip():
            raise errors.TotpRequired()
        # One verification for login and for the self-service endpoints (accounts/totp.py).
        if not await verify_second_factor(session, self.cipher, factor, code or ""):
            raise errors.InvalidTotp()

    async def record_failure(self, session: AsyncSession, username: str, address: str) -> None:
        """Count one failure against the username and the address; lock at the threshold."""
        now = utcnow()
        window_start = now - dt.timedelta(seconds=self.settings.lockout_window_seconds)
        table: Table = LoginFailure.__table__  # type: ignore[assignment]
        thresholds = (
            self.settings.lockout_user_threshold,
            self.settings.lockout_address_threshold,
        )
        LOGIN_FAILURES.inc()
        kinds = ("username", "address")
        keys = failure_keys(username, address)
        for key, threshold, kind in zip(keys, thresholds, kinds, strict=True):
            await session.execute(
                insert_ignoring_conflicts(session, table).values(
                    key=key, failures=0, window_started_at=now, last_failed_at=now
                )
            )
            expired = LoginFailure.window_started_at < window_start
            await session.execute(
                update(LoginFailure)
                .where(LoginFailure.key == key)
                .values(
                    failures=case((expired, 1), else_=LoginFailure.failures + 1),
                    window_started_at=case((expired, now), else_=LoginFailure.window_started_at),
                    last_failed_at=now,
                )
            )
            locked = now + dt.timedelta(seconds=self.settings.lockout_seconds)
            locking = await session.execute(
                update(LoginFailure)
                .where(LoginFailure.key == key)
                .where(LoginFailure.failures >= threshold)
                .values(locked_until=locked, failures=0, window_started_at=now)
            )
            if locking.rowcount:  # type: ignore[attr-defined]
                LOCKOUTS.labels(kind).inc()
