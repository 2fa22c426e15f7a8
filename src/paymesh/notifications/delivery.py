"""The dispatcher: sends queued messages outside any database transaction and records what
happened, `queued → sent → delivered | failed`.

It leases due messages (skipping those another process holds), resolves the address at
send time (email and phone from profiles, device tokens from this service), sends through
the channel, and records the outcome in a transaction of its own. A transient error
schedules the next attempt after a full-jitter exponential wait (tenacity's
`wait_random_exponential`); after the last attempt, or at the first permanent error, the
message is failed and dead-lettered until an operator replays it. A process killed while
sending leaves its lease to expire: the message is sent again (channels cannot promise
exactly once; email carries a fixed Message-ID so the duplicate is recognisable).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
import tenacity
from sqlalchemy import bindparam, delete, or_, select, update

from paymesh.identity.client import IdentityClient
from paymesh.kernel.db import Database, any_due, due_keys, utcnow
from paymesh.kernel.errors import RemoteServiceError
from paymesh.kernel.events import Outbox, pause, woken
from paymesh.kernel.jobs import worker_name
from paymesh.kernel.metrics import NOTIFICATION_DELIVERIES
from paymesh.notifications.channels import (
    Channel,
    OutgoingMessage,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)
from paymesh.notifications.models import Device, notification_table
from paymesh.notifications.service import QUEUED_FLAG, is_security

log = structlog.get_logger("paymesh.notifications")


class AddressBook(Protocol):
    async def address(self, user_id: str, channel: str) -> str | None:
        """The user's email address or E.164 phone; None when they have none. Raises
        TransientSendError when the directory cannot answer now."""
        ...


class IdentityAddresses:
    """Email and phone from identity, which owns them; a disabled account gets nothing."""

    def __init__(self, identity: IdentityClient) -> None:
        self.identity = identity

    async def address(self, user_id: str, channel: str) -> str | None:
        try:
            contact = await self.identity.contact(user_id)
        except RemoteServiceError as error:
            if error.remote_status == 404:
                raise PermanentSendError("no such user") from error
            raise TransientSendError(f"identity: {error.detail}") from error
        except Exception as error:
            raise TransientSendError(f"identity: {type(error).__name__}") from error
        if not contact.active:
            raise PermanentSendError("the user's account is disabled")
        return contact.email if channel == "email" else contact.phone


@dataclass(frozen=True)
class Outcome:
    result: SendResult | None
    error: SendError | None
    recipient: str | None


def device_label(token: str) -> str:
    return f"device …{token[-8:]}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _is_due(now: Any) -> tuple[Any, ...]:
    """Queued, its next attempt come, and not leased by a live worker."""
    table = notification_table
    return (
        table.c.status == "queued",
        table.c.next_attempt_at <= now,
        or_(table.c.locked_until.is_(None), table.c.locked_until < now),
    )


_ANY_DUE = any_due(
    notification_table,
    *_is_due(bindparam("now", type_=notification_table.c.next_attempt_at.type)),
)


class Dispatcher:
    name = "notification-dispatcher"

    def __init__(
        self,
        database: Database,
        channels: dict[str, Channel],
        addresses: AddressBook | None,
        outbox: Outbox,
        *,
        max_attempts: int,
        retry_initial_seconds: float,
        retry_max_seconds: float,
        batch_size: int = 16,
        lease_seconds: float = 120.0,
        interval_seconds: float = 1.0,
    ) -> None:
        self.database = database
        self.channels = channels  # filled at start, when the mail catcher has its port
        self.addresses = addresses
        self.outbox = outbox
        self.max_attempts = max_attempts
        self.wait = tenacity.wait_random_exponential(
            multiplier=retry_initial_seconds, max=retry_max_seconds
        )
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.interval_seconds = interval_seconds
        self.worker = worker_name()
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        database.wake_on_commit(QUEUED_FLAG, self._wake.set)

    def wake(self) -> None:
        self._wake.set()

    def retry_delay(self, attempts: int) -> float:
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempts
        return float(self.wait(state))

    # -- the loop ------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    async def run_forever(self) -> None:
        woke = False
        while not self.stopping.is_set():
            try:
                due_known = woke
                while await self.run_once(due_known=due_known) and not self.stopping.is_set():
                    due_known = True
            except Exception:
                log.exception("notification_dispatch_error")
            if self.stopping.is_set():
                break
            woke = await woken(self._wake, self.interval_seconds)
            await pause(self.stopping, 0.01)

    async def run_once(self, *, due_known: bool = False) -> int:
        """Send one leased batch; returns how many messages were attempted. `due_known`:
        a message queued in this process just woke the dispatcher, so whether anything is
        due is not asked first."""
        rows = await self._claim(due_known=due_known)
        if rows:
            await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _claim(self, *, due_known: bool) -> list[dict[str, Any]]:
        table = notification_table
        now = utcnow()
        if not due_known and await self.database.reads.one(_ANY_DUE, now=now) is None:
            return []  # the usual poll: no claim's transaction (kernel/db.py: any_due)
        due = due_keys(
            table,
            *_is_due(now),
            order_by=table.c.next_attempt_at,
            limit=self.batch_size,
            postgres=self.database.is_postgres,
        )
        async with self.database.transaction() as session:
            rows = await session.execute(
                update(table)
                .where(table.c.id.in_(due))
                .values(locked_until=now + dt.timedelta(seconds=self.lease_seconds))
                .returning(*table.c)
            )
            return [dict(row._mapping) for row in rows]

    # -- one message ---------------------------------------------------------------------

    async def _deliver(self, row: dict[str, Any]) -> None:
        try:
            outcome = await self._send(row)
        except Exception as error:  # a bug must not stop the others: retry it later
            log.exception("notification_send_crashed", notification_id=row["id"])
            outcome = Outcome(None, TransientSendError(f"internal: {type(error).__name__}"), None)
        await self._record(row, outcome)

    async def _send(self, row: dict[str, Any]) -> Outcome:
        channel = self.channels.get(row["channel"])
        if channel is None:
            return Outcome(None, PermanentSendError(f"the {row['channel']} channel is off"), None)
        if row["text"] is None:
            return Outcome(None, PermanentSendError("the message content was erased"), None)
        if row["channel"] == "push":
            return await self._push(channel, row)
        if self.addresses is None:
            return Outcome(None, TransientSendError("no address book yet"), None)
        try:
            address = await self.addresses.address(row["user_id"], row["channel"])
        except SendError as error:
            return Outcome(None, error, None)
        if not address:
            return Outcome(None, PermanentSendError(f"the user has no {_address_kind(row)}"), None)
        message = self._message(row, address)
        try:
            return Outcome(await channel.send(message), None, address)
        except SendError as error:
            return Outcome(None, error, address)

    async def _push(self, channel: Channel, row: dict[str, Any]) -> Outcome:
        async with self.database.transaction() as session:
            devices = (
                await session.execute(
                    select(Device.id, Device.token).where(Device.user_id == row["user_id"])
                )
            ).all()
        if not devices:
            return Outcome(None, PermanentSendError("the user has no registered device"), None)
        results: list[SendResult] = []
        failures: list[SendError] = []
        gone: list[str] = []
        for device in devices:
            try:
                results.append(await channel.send(self._message(row, device.token)))
            except SendError as error:
                failures.append(error)
                if error.provider_code == "UNREGISTERED":
                    gone.append(device.id)
        if gone:
            async with self.database.transaction() as session:
                await session.execute(delete(Device).where(Device.id.in_(gone)))
        label = ", ".join(device_label(device.token) for device in devices)[:320]
        if results:
            return Outcome(results[0], None, label)
        transient = [error for error in failures if isinstance(error, TransientSendError)]
        return Outcome(None, (transient or failures)[0], label)

    def _message(self, row: dict[str, Any], to: str) -> OutgoingMessage:
        data = {"notification_id": row["id"], "event_type": row["event_type"]}
        return OutgoingMessage(
            channel=row["channel"],
            to=to,
            subject=row["subject"],
            text=row["text"],
            html=row["html"],
            data=data if row["channel"] == "push" else {},
            idempotency_key=row["id"],
        )

    async def _record(self, row: dict[str, Any], outcome: Outcome) -> None:
        table = notification_table
        now = utcnow()
        attempts = row["attempts"] + 1
        security = is_security(row["category"])
        values: dict[str, Any] = {"attempts": attempts, "locked_until": None}
        if outcome.recipient is not None:
            values["recipient"] = outcome.recipient[:320]
        event: str | None = None
        error = outcome.error
        if outcome.result is not None:
            status = outcome.result.status
            values.update(
                status=status,
                provider_message_id=outcome.result.provider_message_id[:255],
                sent_at=now,
                next_attempt_at=None,
                last_error=None,
            )
            if status == "delivered":
                values["delivered_at"] = now
            event = f"notifications.notification.{status}"
        elif isinstance(error, TransientSendError) and attempts < self.max_attempts:
            values.update(
                next_attempt_at=now + dt.timedelta(seconds=self.retry_delay(attempts)),
                last_error=error.detail[:1000],
                provider_error_code=error.provider_code,
            )
            log.info(
                "notification_retry_scheduled",
                notification_id=row["id"],
                attempts=attempts,
                error=error.detail[:200],
            )
        else:
            assert error is not None
            values.update(
                status="failed",
                next_attempt_at=None,
                failed_at=now,
                dead_lettered_at=now,
                last_error=error.detail[:1000],
                provider_error_code=error.provider_code,
            )
            event = "notifications.notification.failed"
            log.warning(
                "notification_dead_lettered",
                notification_id=row["id"],
                attempts=attempts,
                error=error.detail[:200],
            )
        NOTIFICATION_DELIVERIES.labels(
            row["channel"], event.rsplit(".", 1)[-1] if event is not None else "retrying"
        ).inc()
        if event is not None and security:
            # A one-time code lives in the database only while it is on its way.
            values.update(subject=None, text=None, html=None)
        async with self.database.transaction() as session:
            changed = await session.execute(
                update(table)
                .where(table.c.id == row["id"], table.c.status == "queued")
                .values(**values)
            )
            if event is not None and changed.rowcount:  # type: ignore[attr-defined]
                await self.outbox.add(
                    session,
                    event,
                    {
                        "id": row["id"],
                        "user_id": row["user_id"],
                        "channel": row["channel"],
                        "event_type": row["event_type"],
                        "event_id": row["event_id"],
                        "about": row["about"],
                        "attempts": attempts,
                        "provider_message_id": values.get("provider_message_id"),
                        "error": values.get("last_error"),
                    },
                    subject=row["id"],
                )


def _address_kind(row: dict[str, Any]) -> str:
    return "email address" if row["channel"] == "email" else "phone number"
