"""TOTP (RFC 6238) second factor: enrolment, confirmation, and the one verification that
login, confirmation and disabling share. Codes are accepted one step either side of now,
and each time step once (`last_used_step`): a code seen on the wire cannot be replayed.
Recovery codes are stored as SHA-256 hashes and each works once."""

from __future__ import annotations

import secrets
import time

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity import repository as identity_repository
from paymesh.identity.accounts import repository
from paymesh.identity.models import RecoveryCode, TotpFactor
from paymesh.identity.security import Cipher, secret_hash
from paymesh.kernel.db import utcnow
from paymesh.kernel.ids import new_id

TOTP_PERIOD_SECONDS = 30
ISSUER_NAME = "Paymesh"
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def normalize(code: str) -> str:
    return code.strip().replace(" ", "").upper()


def new_recovery_code() -> str:
    """Ten characters in two groups (`ABCDE-FGH23`): never six digits, so never a TOTP."""
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def totp_for(factor: TotpFactor, cipher: Cipher) -> pyotp.TOTP:
    return pyotp.TOTP(cipher.decrypt(factor.secret), interval=TOTP_PERIOD_SECONDS)


def matching_step(totp: pyotp.TOTP, code: str, now: float | None = None) -> int | None:
    """The time step `code` belongs to (now, or one step either side), or None."""
    if not (code.isdigit() and len(code) == 6):
        return None
    now = time.time() if now is None else now
    for drift in (0, -1, 1):
        at = now + drift * TOTP_PERIOD_SECONDS
        if totp.verify(code, for_time=at, valid_window=0):
            return int(at // TOTP_PERIOD_SECONDS)
    return None


async def verify_second_factor(
    session: AsyncSession, cipher: Cipher, factor: TotpFactor, code: str
) -> bool:
    """True when `code` is a current TOTP code not used before, or an unused recovery code
    (which is then spent). The factor must be confirmed."""
    code = normalize(code)
    step = matching_step(totp_for(factor, cipher), code)
    if step is not None:
        return await identity_repository.accept_totp_step(session, factor.user_id, step)
    if not code or code.isdigit():
        return False
    return await repository.use_recovery_code(session, factor.user_id, secret_hash(code), utcnow())


def new_factor(user_id: str, cipher: Cipher) -> tuple[TotpFactor, str]:
    secret = pyotp.random_base32()
    factor = TotpFactor(
        user_id=user_id,
        secret=cipher.encrypt(secret),
        confirmed=False,
        last_used_step=None,
        created_at=utcnow(),
        confirmed_at=None,
    )
    return factor, secret


def provisioning_uri(secret: str, account_name: str) -> str:
    totp = pyotp.TOTP(secret, interval=TOTP_PERIOD_SECONDS)
    return totp.provisioning_uri(name=account_name, issuer_name=ISSUER_NAME)


async def issue_recovery_codes(session: AsyncSession, user_id: str) -> list[str]:
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    now = utcnow()
    rows = [
        RecoveryCode(
            id=new_id("rcv"),
            user_id=user_id,
            code_hash=secret_hash(code),
            used_at=None,
            created_at=now,
        )
        for code in codes
    ]
    await repository.replace_recovery_codes(session, user_id, rows)
    return codes
