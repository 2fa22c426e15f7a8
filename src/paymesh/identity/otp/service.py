"""One-time codes sent out of band: issue one (store its HMAC, have notifications deliver
it), verify a guess, report a code's state. No HTTP routes, no SQL strings.

The code exists in three places only: this process's memory while it is issued, the
request to notifications, and the message the user receives. It is never logged and
never written to an event. The database keeps HMAC-SHA256(key, id ":" code), the key
derived (HKDF) from the platform signing secret, which production refuses to leave at
its public default; with 10^6 codes, a plain hash would be reversed by trying them all.

Issue and verify run their own transactions rather than the request's: the code row must
be committed before the message goes out (its own transaction), and a wrong guess must
be counted even though the answer is an error (which rolls the request's back).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httpx
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity.errors import IdentityError, UserNotFound
from paymesh.identity.models import OneTimeCode as CodeRow
from paymesh.identity.otp import errors, repository
from paymesh.identity.otp.schemas import (
    Channel,
    OneTimeCode,
    OneTimeCodeCheck,
    OneTimeCodeCreate,
    OneTimeCodeVerification,
    Status,
)
from paymesh.kernel.auth import Caller
from paymesh.kernel.config.services import IdentitySettings
from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.errors import PaymeshError, RemoteServiceError
from paymesh.kernel.events import Outbox
from paymesh.kernel.http import ServiceClient
from paymesh.kernel.ids import new_id

log = structlog.get_logger("paymesh.identity")

ISSUED = "identity.otp.issued"
VERIFIED = "identity.otp.verified"
LOCKED = "identity.otp.locked"
MESSAGES_PATH = "/v1/notifications/messages"


class CodeHasher:
    """HMAC-SHA256 of a code bound to its id, so a hash cannot be checked against the
    code of another row, keyed apart from every other use of the signing secret."""

    def __init__(self, master_secret: str, purpose: str = "paymesh-identity-one-time-codes"):
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()
        ).derive(master_secret.encode())

    def hash(self, code_id: str, code: str) -> str:
        message = f"{code_id}:{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def matches(self, code_id: str, code: str, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash(code_id, code), stored_hash)


def new_code(digits: int) -> str:
    """`digits` decimal digits, uniformly random (leading zeros kept)."""
    return f"{secrets.randbelow(10**digits):0{digits}d}"


@dataclass(frozen=True)
class CodeMessage:
    """What notifications is asked to send. `code` stays out of repr (and so out of
    tracebacks and logs that print the message)."""

    otp_id: str
    user_id: str
    purpose: str
    channel: str | None
    expires_in_minutes: int
    code: str = field(repr=False)


class CodeDeliveryError(Exception):
    """Notifications did not take the message; `reason` never contains the code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CodeDelivery(Protocol):
    async def deliver(self, message: CodeMessage) -> None:
        """Hand the code to notifications; raises `CodeDeliveryError` when it was not
        accepted for sending."""
        ...


class HttpCodeDelivery:
    """`POST /v1/notifications/messages` as identity's service account. The code row's id
    is the idempotency key, so notifications sends one message per code however often
    it is asked. No Idempotency-Key header: the kernel would keep the response, and the
    retries it allows are not worth a second place that could hold the code."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def deliver(self, message: CodeMessage) -> None:
        data: dict[str, Any] = {
            "user_id": message.user_id,
            "code": message.code,
            "purpose": message.purpose,
            "expires_in_minutes": message.expires_in_minutes,
        }
        body: dict[str, Any] = {
            "event_type": ISSUED,
            "user_id": message.user_id,
            "data": data,
            "idempotency_key": message.otp_id,
        }
        if message.channel is not None:
            body["channel"] = message.channel  # only this channel; else the routing rule's
        try:
            response = await self._client.request("POST", MESSAGES_PATH, json=body)
            answer = response.json()
        except RemoteServiceError as error:
            reason = f"notifications answered {error.remote_status} {error.remote_code}"
            raise CodeDeliveryError(reason) from None
        except PaymeshError as error:  # unreachable, timed out
            raise CodeDeliveryError(error.code) from None
        except (httpx.HTTPError, ValueError) as error:
            raise CodeDeliveryError(error.__class__.__name__) from None
        sent = answer.get("notifications") if isinstance(answer, dict) else None
        if not isinstance(sent, list) or not sent:
            raise CodeDeliveryError("notifications accepted no message")


def status_of(row: CodeRow, now: dt.datetime) -> Status:
    if row.used_at is not None:
        return "used"
    if row.voided_at is not None:
        return "void"
    if row.attempts_left <= 0:
        return "locked"
    if row.expires_at <= now:
        return "expired"
    return "pending"


def view(row: CodeRow, now: dt.datetime) -> OneTimeCode:
    return OneTimeCode(
        id=row.id,
        user_id=row.user_id,
        purpose=row.purpose,
        channel=cast(Channel | None, row.channel),  # the column holds sms | email
        status=status_of(row, now),
        attempts_left=row.attempts_left,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        voided_at=row.voided_at,
    )


def refusal(status: Status) -> IdentityError:
    """Why a code that is not `pending` cannot be verified."""
    match status:
        case "used":
            return errors.CodeUsed()
        case "void":
            return errors.CodeVoided()
        case "locked":
            return errors.CodeLocked(attempts_left=0)
        case _:
            return errors.CodeExpired()


def _event(row: CodeRow) -> dict[str, Any]:
    """An event's view of a code: never the code, never its hash."""
    return {
        "id": row.id,
        "user_id": row.user_id,
        "purpose": row.purpose,
        "channel": row.channel,
        "expires_at": row.expires_at.isoformat(),
    }


class OneTimeCodes:
    def __init__(
        self,
        database: Database,
        outbox: Outbox,
        settings: IdentitySettings,
        hasher: CodeHasher,
        delivery: CodeDelivery,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.settings = settings
        self.hasher = hasher
        self.delivery = delivery

    async def issue(self, caller: Caller, data: OneTimeCodeCreate) -> OneTimeCode:
        """Store a new code (voiding the user's open ones for the purpose), have it
        delivered, then record `identity.otp.issued`. Undelivered, it is voided: 503."""
        code = new_code(self.settings.otp_digits)
        row = await self._store(caller, data, code)
        message = CodeMessage(
            otp_id=row.id,
            user_id=row.user_id,
            purpose=row.purpose,
            channel=row.channel,
            expires_in_minutes=math.ceil(self.settings.otp_ttl_seconds / 60),
            code=code,
        )
        try:
            await self.delivery.deliver(message)
        except CodeDeliveryError as error:
            async with self.database.transaction() as session:
                await repository.void(session, row.id, utcnow(), "delivery_failed")
            log.warning("identity_otp_delivery_failed", otp_id=row.id, reason=error.reason)
            raise errors.CodeDeliveryFailed(
                detail=f"the code could not be sent ({error.reason}); it was voided", id=row.id
            ) from None
        async with self.database.transaction() as session:
            session.info["actor"] = caller
            await self.outbox.add(session, ISSUED, _event(row), row.user_id)
        log.info("identity_otp_issued", otp_id=row.id, user_id=row.user_id)
        return view(row, utcnow())

    async def _store(self, caller: Caller, data: OneTimeCodeCreate, code: str) -> CodeRow:
        settings = self.settings
        async with self.database.transaction() as session:
            session.info["actor"] = caller
            user = await repository.lock_user(session, data.user_id)
            if user is None:
                raise UserNotFound()
            if user.status != "active":
                raise errors.UserDisabled()
            if (data.channel == "sms" and not user.phone) or (
                data.channel == "email" and not user.email
            ):
                raise errors.ChannelUnavailable(detail=f"the user has no {data.channel} address")
            if data.channel is None and not (user.phone or user.email):
                raise errors.ChannelUnavailable(detail="the user has no phone or email")
            now = utcnow()
            window = dt.timedelta(seconds=settings.otp_issue_window_seconds)
            issued = await repository.count_issued_since(session, user.id, now - window)
            if issued >= settings.otp_issue_limit:
                raise errors.TooManyCodes(
                    detail=f"at most {settings.otp_issue_limit} codes per user every "
                    f"{settings.otp_issue_window_seconds} seconds"
                )
            await repository.void_open(session, user.id, data.purpose, now, "replaced")
            code_id = new_id("otp")
            row = CodeRow(
                id=code_id,
                user_id=user.id,
                purpose=data.purpose,
                channel=data.channel,
                code_hash=self.hasher.hash(code_id, code),
                attempts_left=settings.otp_max_attempts,
                created_at=now,
                expires_at=now + dt.timedelta(seconds=settings.otp_ttl_seconds),
            )
            session.add(row)
        return row

    async def verify(
        self, caller: Caller, code_id: str, check: OneTimeCodeCheck
    ) -> OneTimeCodeVerification:
        """Use the code if the guess is right; a wrong guess spends an attempt, and is
        committed before the refusal is raised."""
        async with self.database.transaction() as session:
            session.info["actor"] = caller
            outcome = await self._verify(session, code_id, check)
        if isinstance(outcome, IdentityError):
            raise outcome
        return outcome

    async def _verify(
        self, session: AsyncSession, code_id: str, check: OneTimeCodeCheck
    ) -> OneTimeCodeVerification | IdentityError:
        row = await repository.get(session, code_id)
        if row is None:
            raise errors.OneTimeCodeNotFound()
        if check.purpose is not None and check.purpose != row.purpose:
            raise errors.PurposeMismatch()
        now = utcnow()
        if (status := status_of(row, now)) != "pending":
            raise refusal(status)
        if self.hasher.matches(row.id, check.code, row.code_hash):
            if not await repository.use(session, row.id, now):
                return await self._refusal_now(session, row.id)
            await self.outbox.add(session, VERIFIED, _event(row), row.user_id)
            log.info("identity_otp_verified", otp_id=row.id)
            return OneTimeCodeVerification(id=row.id, purpose=row.purpose, user_id=row.user_id)
        left = await repository.spend_attempt(session, row.id, now)
        if left is None:
            return await self._refusal_now(session, row.id)
        log.info("identity_otp_wrong_guess", otp_id=row.id, attempts_left=left)
        if left == 0:
            await self.outbox.add(session, LOCKED, _event(row), row.user_id)
            log.warning("identity_otp_locked", otp_id=row.id)
        return errors.InvalidCode(attempts_left=left)

    async def _refusal_now(self, session: AsyncSession, code_id: str) -> IdentityError:
        """A concurrent request changed the code first: why it is no longer open."""
        row = await repository.get(session, code_id, fresh=True)
        if row is None:  # pragma: no cover - codes are never deleted, only their user
            return errors.OneTimeCodeNotFound()
        return refusal(status_of(row, utcnow()))

    async def get(self, session: AsyncSession, code_id: str) -> OneTimeCode:
        row = await repository.get(session, code_id)
        if row is None:
            raise errors.OneTimeCodeNotFound()
        return view(row, utcnow())
