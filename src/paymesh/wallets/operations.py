"""Money movements: deposits, withdrawals, holds and their capture or release.

Each spans two databases (this service's and the ledger's), so each is an operation row
with a recovery point, after the "atomic phases" pattern:

1. The request looks its operation up by (kind, wallet, hold, caller, Idempotency-Key). A
   new one is checked (wallet state, hold state), written `pending` and COMMITTED before
   the ledger is called. Its id is the ledger transfer's id.
2. The ledger is called with that id. The ledger treats a transfer id as its idempotency
   key (same id and fields: the original, no second effect), and posting or voiding a
   pending transfer again returns the same transfer: the call may be repeated any number
   of times and moves money at most once.
3. The outcome is written with a conditional update (`pending` -> `completed`/`failed`)
   and its event, in the request's transaction. Whoever makes that update first (the
   request, its retry, or the recovery job) writes the event; the others read the result.

A crash after 1 leaves a `pending` row: a retry with the same key resumes it at 2, and
`jobs.resume_operations` does so for rows older than `recovery_after_seconds`. A definite
refusal by the ledger (insufficient funds, an expired hold) marks the operation `failed`
and changes nothing else; a ledger that cannot be reached leaves it `pending` (503).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.auth import Caller
from paymesh.kernel.db import utcnow
from paymesh.kernel.errors import IdempotencyKeyReused, RemoteServiceError, ServiceUnavailable
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import new_id
from paymesh.kernel.jsonutil import dumps
from paymesh.ledger.client import LedgerClient
from paymesh.ledger.schemas import Transfer
from paymesh.wallets import errors, repository
from paymesh.wallets.postings import Postings
from paymesh.wallets.schemas import Hold, Operation
from paymesh.wallets.service import WalletsService, checkpoint, request_digest

REFUSALS: dict[str, type[errors.WalletsError]] = {
    "exceeds_credits": errors.InsufficientFunds,
    "pending_transfer_expired": errors.HoldExpired,
    "pending_transfer_already_posted": errors.HoldNotActive,
    "pending_transfer_already_voided": errors.HoldNotActive,
    "exceeds_pending_amount": errors.ExceedsHoldAmount,
}
"""Ledger codes that are a definite answer about this operation (anything else 4xx too,
except authentication and availability problems, which leave the operation pending)."""
NOT_DEFINITE = frozenset({"unauthenticated", "forbidden", "ledger_overloaded"})


def refusal(code: str | None) -> errors.WalletsError:
    kind = REFUSALS.get(code or "", errors.OperationFailed)
    return kind(detail=f"ledger: {code}") if kind is errors.OperationFailed else kind()


@dataclass(frozen=True)
class Intent:
    kind: str
    wallet: Any
    amount: int | None = None
    reference: str | None = None
    hold: Any = None
    expires_in_seconds: int | None = None

    def fingerprint(self) -> str:
        return request_digest(
            dumps([self.amount, self.reference, self.expires_in_seconds]).decode()
        )


def present_operation(row: Any) -> Operation:
    return Operation.model_validate(row, from_attributes=True)


def present_hold(row: Any, currency: str) -> Hold:
    return Hold(
        id=row.id,
        wallet_id=row.wallet_id,
        currency=currency,
        amount=row.amount,
        captured_amount=row.captured_amount,
        status=row.status,
        expires_at=row.expires_at,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
    )


class Operations:
    def __init__(
        self,
        wallets: WalletsService,
        ledger: LedgerClient,
        outbox: Outbox,
        max_hold_seconds: int = 31_536_000,
    ) -> None:
        self.max_hold_seconds = max_hold_seconds
        self.wallets = wallets
        self.ledger = ledger
        self.outbox = outbox
        self.postings = Postings(ledger)

    # -- the use cases -------------------------------------------------------------------

    async def deposit(
        self, session: AsyncSession, caller: Caller, wallet_id: str, amount: int, ref: str, key: str
    ) -> Operation:
        wallet = await self.wallets.visible_wallet(session, caller, wallet_id)
        intent = Intent("deposit", wallet, amount=amount, reference=ref)
        row = await self._run(session, caller, intent, key, self._check_credit)
        return present_operation(row)

    async def withdraw(
        self, session: AsyncSession, caller: Caller, wallet_id: str, amount: int, ref: str, key: str
    ) -> Operation:
        wallet = await self.wallets.visible_wallet(session, caller, wallet_id)
        intent = Intent("withdrawal", wallet, amount=amount, reference=ref)
        row = await self._run(session, caller, intent, key, self._check_debit)
        return present_operation(row)

    async def place_hold(
        self,
        session: AsyncSession,
        caller: Caller,
        wallet_id: str,
        amount: int,
        expires_in_seconds: int,
        key: str,
    ) -> Hold:
        wallet = await self.wallets.visible_wallet(session, caller, wallet_id)
        if expires_in_seconds > self.max_hold_seconds:
            raise errors.HoldTooLong(detail=f"at most {self.max_hold_seconds} seconds")
        intent = Intent("hold", wallet, amount=amount, expires_in_seconds=expires_in_seconds)
        row = await self._run(session, caller, intent, key, self._check_debit)
        return await self._hold(session, row.hold_id, wallet.currency)

    async def capture(
        self,
        session: AsyncSession,
        caller: Caller,
        wallet_id: str,
        hold_id: str,
        amount: int | None,
        key: str,
    ) -> Hold:
        wallet, hold = await self._visible_hold(session, caller, wallet_id, hold_id)
        intent = Intent("capture", wallet, amount=amount, hold=hold)
        await self._run(session, caller, intent, key, self._check_capture)
        return await self._hold(session, hold_id, wallet.currency)

    async def release(
        self, session: AsyncSession, caller: Caller, wallet_id: str, hold_id: str, key: str
    ) -> Hold:
        wallet, hold = await self._visible_hold(session, caller, wallet_id, hold_id)
        intent = Intent("release", wallet, hold=hold)
        await self._run(session, caller, intent, key, self._check_release)
        return await self._hold(session, hold_id, wallet.currency)

    async def get_hold(
        self, session: AsyncSession, caller: Caller, wallet_id: str, hold_id: str
    ) -> Hold:
        wallet, hold = await self._visible_hold(session, caller, wallet_id, hold_id)
        return present_hold(hold, wallet.currency)

    # -- checks before a new operation is recorded --------------------------------------

    @staticmethod
    def _check_credit(intent: Intent) -> None:
        if intent.wallet.status not in ("active", "frozen"):
            raise errors.WalletNotActive(detail=f"the wallet is {intent.wallet.status}")

    @staticmethod
    def _check_debit(intent: Intent) -> None:
        if intent.wallet.status == "frozen":
            raise errors.WalletFrozen()
        if intent.wallet.status != "active":
            raise errors.WalletNotActive(detail=f"the wallet is {intent.wallet.status}")

    @classmethod
    def _check_capture(cls, intent: Intent) -> None:
        cls._check_debit(intent)
        cls._check_release(intent)
        if intent.amount is not None and intent.amount > intent.hold.amount:
            raise errors.ExceedsHoldAmount(detail=f"the hold is {intent.hold.amount}")

    @staticmethod
    def _check_release(intent: Intent) -> None:
        if intent.hold.status == "expired":
            raise errors.HoldExpired()
        if intent.hold.status != "active":
            raise errors.HoldNotActive(detail=f"the hold is {intent.hold.status}")

    # -- the three steps -----------------------------------------------------------------

    async def _run(
        self, session: AsyncSession, caller: Caller, intent: Intent, key: str, check: Any
    ) -> Any:
        hold_id = intent.hold.id if intent.hold is not None else ""
        request_key = request_digest(
            intent.kind, intent.wallet.id, hold_id, caller.idempotency_scope, key
        )
        row = await repository.operation_for_request(session, request_key)
        if row is not None and row.request_hash != intent.fingerprint():
            raise IdempotencyKeyReused()
        if row is None:
            check(intent)
            try:
                row = await self._record(session, caller, intent, request_key)
            except IntegrityError:  # the same request, recorded by another process just now
                await session.rollback()
                row = await repository.operation_for_request(session, request_key)
                if row is None or row.request_hash != intent.fingerprint():
                    raise IdempotencyKeyReused() from None
        return await self.advance(session, row)

    async def _record(
        self, session: AsyncSession, caller: Caller, intent: Intent, request_key: str
    ) -> Any:
        # The wallet is still as checked, and stays so until this commits: `close` cannot
        # slip between the check and the recorded operation (a row lock on PostgreSQL;
        # SQLite's one writer serialises the two anyway).
        status = intent.wallet.status
        if not await repository.set_wallet_status(session, intent.wallet.id, status, (status,)):
            raise errors.WalletNotActive(detail="the wallet changed; retry")
        now = utcnow()
        operation_id = new_id("wop")
        hold_id = intent.hold.id if intent.hold is not None else None
        if intent.kind == "hold":
            hold_id = new_id("hld")
            await repository.insert_hold(
                session,
                {
                    "id": hold_id,
                    "wallet_id": intent.wallet.id,
                    "amount": intent.amount,
                    "captured_amount": 0,
                    "status": "placing",
                    "transfer_id": operation_id,
                    "expires_in_seconds": intent.expires_in_seconds,
                    "expires_at": None,
                    "created_at": now,
                    "resolved_at": None,
                },
            )
        await repository.insert_operation(
            session,
            {
                "id": operation_id,
                "wallet_id": intent.wallet.id,
                "kind": intent.kind,
                "amount": intent.amount,
                "currency": intent.wallet.currency,
                "reference": intent.reference,
                "hold_id": hold_id,
                "status": "pending",
                "failure_code": None,
                "request_key": request_key,
                "request_hash": intent.fingerprint(),
                "created_by": caller.subject,
                "created_at": now,
                "completed_at": None,
            },
        )
        await checkpoint(session)
        return await repository.get_operation(session, operation_id)

    async def advance(self, session: AsyncSession, row: Any) -> Any:
        """Take a recorded operation to its end (or to its stored refusal)."""
        if row.status == "pending":
            try:
                transfer = await self._ledger_step(session, row)
            except RemoteServiceError as error:
                if error.remote_status >= 500 or error.remote_code in NOT_DEFINITE:
                    raise ServiceUnavailable(detail=f"ledger: {error.remote_code}") from None
                await self._fail(session, row, error.remote_code)
                await checkpoint(session)
                raise refusal(error.remote_code) from None
            if await repository.finish_operation(session, row.id, "completed"):
                await self._completed(session, row, transfer)
            row = await repository.get_operation(session, row.id)
        if row.status == "failed":
            raise refusal(row.failure_code)
        return row

    async def _ledger_step(self, session: AsyncSession, row: Any) -> Transfer:
        wallet = await repository.get_wallet(session, row.wallet_id)
        hold = await repository.get_hold(session, row.hold_id) if row.hold_id else None
        return await self.postings.apply(row, wallet.ledger_account_id, hold)

    async def _fail(self, session: AsyncSession, row: Any, code: str) -> None:
        if await repository.finish_operation(session, row.id, "failed", code):
            if row.kind == "hold":
                await repository.update_hold(
                    session, row.hold_id, ("placing",), status="failed", resolved_at=utcnow()
                )
            elif code == "pending_transfer_expired":
                await self._hold_resolved(session, row.hold_id, "expired", 0)

    async def _completed(self, session: AsyncSession, row: Any, transfer: Transfer) -> None:
        data = present_operation(await repository.get_operation(session, row.id)).model_dump(
            mode="json"
        )
        if row.kind in ("deposit", "withdrawal"):
            kind = "deposit" if row.kind == "deposit" else "withdrawal"
            # Who to tell (notifications) without a call back to wallets.
            data["owner_id"] = (await repository.get_wallet(session, row.wallet_id)).owner_id
            await self.outbox.add(session, f"wallets.{kind}.completed", data, subject=row.wallet_id)
            return
        if row.kind == "hold":
            status = {"pending": "active", "posted": "captured", "voided": "released"}.get(
                transfer.status, transfer.status
            )
            await repository.update_hold(
                session,
                row.hold_id,
                ("placing",),
                status=status,
                expires_at=transfer.expires_at,
                captured_amount=transfer.posted_amount,
                resolved_at=transfer.resolved_at,
            )
            await self._hold_event(session, row.hold_id, "created")
            return
        status = "captured" if row.kind == "capture" else "released"
        await self._hold_resolved(session, row.hold_id, status, transfer.posted_amount)

    async def _hold_resolved(
        self, session: AsyncSession, hold_id: str, status: str, captured: int
    ) -> None:
        if await repository.update_hold(
            session,
            hold_id,
            ("active", "placing"),
            status=status,
            captured_amount=captured,
            resolved_at=utcnow(),
        ):
            await self._hold_event(session, hold_id, status)

    async def _hold_event(self, session: AsyncSession, hold_id: str, what: str) -> None:
        hold = await repository.get_hold(session, hold_id)
        wallet = await repository.get_wallet(session, hold.wallet_id)
        data = present_hold(hold, wallet.currency).model_dump(mode="json")
        data["owner_id"] = wallet.owner_id
        await self.outbox.add(session, f"wallets.hold.{what}", data, subject=hold.wallet_id)

    async def settle_hold(self, session: AsyncSession, hold_id: str) -> bool:
        """Make an active hold past its expiry agree with the ledger; True if it changed."""
        hold = await repository.get_hold(session, hold_id)
        if hold is None or hold.status != "active":
            return False
        transfer = await self.ledger.get_transfer(hold.transfer_id)
        if transfer.status == "pending":
            return False  # the ledger's expiry job has not reached it yet
        status = {"expired": "expired", "voided": "released", "posted": "captured"}
        await self._hold_resolved(session, hold.id, status[transfer.status], transfer.posted_amount)
        return True

    # -- helpers -------------------------------------------------------------------------

    async def _visible_hold(
        self, session: AsyncSession, caller: Caller, wallet_id: str, hold_id: str
    ) -> tuple[Any, Any]:
        wallet = await self.wallets.visible_wallet(session, caller, wallet_id)
        hold = await repository.get_hold(session, hold_id)
        if hold is None or hold.wallet_id != wallet.id:
            raise errors.HoldNotFound(detail=f"no hold {hold_id} on this wallet")
        return wallet, hold

    async def _hold(self, session: AsyncSession, hold_id: str, currency: str) -> Hold:
        return present_hold(await repository.get_hold(session, hold_id), currency)
