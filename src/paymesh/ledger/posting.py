"""The ledger's rules, applied in memory to the rows one database transaction has locked.

`Posting` holds the accounts and transfers of one batch, applies operations in order,
checks every rule (currencies, flags including pending amounts, overflow, pending-state
transitions), and records what must be written: dirty accounts, new and resolved
transfers, entries and events. An atomic group is undone in memory when any of its
operations fails. No I/O happens here, so the rules are tested directly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from paymesh.kernel.money import MAX_AMOUNT_MINOR
from paymesh.ledger import errors

DEBITS_MUST_NOT_EXCEED_CREDITS = 1
CREDITS_MUST_NOT_EXCEED_DEBITS = 2


@dataclass(slots=True)
class AccountState:
    id: str
    currency: str
    flags: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


@dataclass(slots=True)
class TransferState:
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    posted_amount: int
    currency: str
    code: int
    status: str
    pending: bool
    timeout_seconds: int | None
    expires_at: dt.datetime | None
    metadata: dict[str, Any]
    created_at: dt.datetime
    resolved_at: dt.datetime | None = None

    def snapshot(self) -> TransferState:
        """A copy (faster than dataclasses.replace on the hot path)."""
        return TransferState(
            self.id,
            self.debit_account_id,
            self.credit_account_id,
            self.amount,
            self.posted_amount,
            self.currency,
            self.code,
            self.status,
            self.pending,
            self.timeout_seconds,
            self.expires_at,
            self.metadata,
            self.created_at,
            self.resolved_at,
        )


@dataclass(frozen=True, slots=True)
class CreateTransfer:
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    code: int = 0
    pending: bool = False
    timeout_seconds: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PostPending:
    id: str
    amount: int | None = None


@dataclass(frozen=True, slots=True)
class VoidPending:
    id: str


@dataclass(frozen=True, slots=True)
class ExpirePending:
    id: str


Operation = CreateTransfer | PostPending | VoidPending | ExpirePending


@dataclass(frozen=True, slots=True)
class Outcome:
    """`created` is False when the operation repeated one already applied (replay: 200)."""

    transfer: TransferState
    created: bool


Result = Outcome | errors.LedgerError


def _same_fields(existing: TransferState, op: CreateTransfer) -> bool:
    return (
        existing.debit_account_id == op.debit_account_id
        and existing.credit_account_id == op.credit_account_id
        and existing.amount == op.amount
        and existing.currency == op.currency
        and existing.code == op.code
        and existing.pending == op.pending
        and existing.timeout_seconds == op.timeout_seconds
        and existing.metadata == op.metadata
    )


class Posting:
    def __init__(
        self,
        accounts: dict[str, AccountState],
        transfers: dict[str, TransferState],
        now: dt.datetime,
    ) -> None:
        self.accounts = accounts
        self.transfers = transfers
        self.now = now
        self.dirty_accounts: set[str] = set()
        self.new_transfers: dict[str, TransferState] = {}
        self.resolved_transfers: dict[str, TransferState] = {}
        self.entries: list[dict[str, Any]] = []
        self.events: list[tuple[str, TransferState]] = []

    # -- groups --------------------------------------------------------------------------

    def apply_group(self, operations: list[Operation], atomic: bool) -> list[Result]:
        if not atomic or len(operations) == 1:
            return [self._apply_alone(operation) for operation in operations]
        mark = self._mark()
        results: list[Result] = []
        for operation in operations:
            try:
                results.append(self.apply(operation))
            except errors.LedgerError as error:
                results.append(error)
        if any(isinstance(result, errors.LedgerError) for result in results):
            self._undo(mark)
            return [
                result if isinstance(result, errors.LedgerError) else errors.LinkedTransferFailed()
                for result in results
            ]
        return results

    def _apply_alone(self, operation: Operation) -> Result:
        try:
            return self.apply(operation)
        except errors.LedgerError as error:
            return error

    def _mark(self) -> tuple[Any, ...]:
        return (
            {key: replace(value) for key, value in self.accounts.items()},
            {key: replace(value) for key, value in self.transfers.items()},
            set(self.dirty_accounts),
            dict(self.new_transfers),
            dict(self.resolved_transfers),
            len(self.entries),
            len(self.events),
        )

    def _undo(self, mark: tuple[Any, ...]) -> None:
        accounts, transfers, dirty, new, resolved, entries, events = mark
        self.accounts.clear()
        self.accounts.update(accounts)
        self.transfers.clear()
        self.transfers.update(transfers)
        self.dirty_accounts = dirty
        # The marked dicts point at objects this group may have changed since; point them
        # at the restored copies instead, or the writer would store the undone changes.
        self.new_transfers = {key: self.transfers[key] for key in new}
        self.resolved_transfers = {key: self.transfers[key] for key in resolved}
        del self.entries[entries:]
        del self.events[events:]

    # -- operations ----------------------------------------------------------------------

    def apply(self, operation: Operation) -> Outcome:
        if isinstance(operation, CreateTransfer):
            return self.create(operation)
        if isinstance(operation, PostPending):
            return self.post(operation)
        if isinstance(operation, VoidPending):
            return self.resolve(operation.id, "voided")
        return self.resolve(operation.id, "expired")

    def create(self, op: CreateTransfer) -> Outcome:
        if op.amount <= 0:
            raise errors.AmountMustBePositive()
        if op.debit_account_id == op.credit_account_id:
            raise errors.AccountsMustBeDifferent()
        if op.timeout_seconds is not None and not op.pending:
            raise errors.TimeoutReservedForPendingTransfer()
        existing = self.transfers.get(op.id)
        if existing is not None:
            if _same_fields(existing, op):
                return Outcome(existing.snapshot(), created=False)
            raise errors.ExistsWithDifferentFields(detail=f"transfer {op.id} exists")
        debit = self._account(op.debit_account_id, "debit")
        credit = self._account(op.credit_account_id, "credit")
        for account in (debit, credit):
            if account.currency != op.currency:
                raise errors.CurrencyMismatch(
                    detail=f"account {account.id} holds {account.currency}, not {op.currency}"
                )
        self._check_limits(debit, credit, op.amount)
        if op.pending:
            self._check_overflow(debit.debits_pending, credit.credits_pending, op.amount)
            debit.debits_pending += op.amount
            credit.credits_pending += op.amount
        else:
            self._check_overflow(debit.debits_posted, credit.credits_posted, op.amount)
            debit.debits_posted += op.amount
            credit.credits_posted += op.amount
        expires_at = (
            self.now + dt.timedelta(seconds=op.timeout_seconds) if op.timeout_seconds else None
        )
        transfer = TransferState(
            id=op.id,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=op.amount,
            posted_amount=0 if op.pending else op.amount,
            currency=op.currency,
            code=op.code,
            status="pending" if op.pending else "posted",
            pending=op.pending,
            timeout_seconds=op.timeout_seconds,
            expires_at=expires_at,
            metadata=op.metadata,
            created_at=self.now,
            resolved_at=None if op.pending else self.now,
        )
        self.transfers[op.id] = transfer
        self.new_transfers[op.id] = transfer
        kind = "pending" if op.pending else "posted"
        self._record(transfer, debit, credit, kind, op.amount)
        return self._applied(f"ledger.transfer.{transfer.status}", transfer)

    def post(self, op: PostPending) -> Outcome:
        transfer = self._pending(op.id)
        if transfer.status == "posted":
            if op.amount is None or op.amount == transfer.posted_amount:
                return Outcome(transfer.snapshot(), created=False)
            raise errors.PendingTransferAlreadyPosted()
        self._check_still_pending(transfer)
        amount = transfer.amount if op.amount is None else op.amount
        if amount <= 0:
            raise errors.AmountMustBePositive()
        if amount > transfer.amount:
            raise errors.ExceedsPendingAmount(
                detail=f"{amount} exceeds the pending {transfer.amount}"
            )
        debit = self.accounts[transfer.debit_account_id]
        credit = self.accounts[transfer.credit_account_id]
        self._check_overflow(debit.debits_posted, credit.credits_posted, amount)
        debit.debits_pending -= transfer.amount
        credit.credits_pending -= transfer.amount
        debit.debits_posted += amount
        credit.credits_posted += amount
        transfer.status = "posted"
        transfer.posted_amount = amount
        transfer.resolved_at = self.now
        self.resolved_transfers[transfer.id] = transfer
        self._record(transfer, debit, credit, "post", amount)
        return self._applied("ledger.transfer.posted", transfer)

    def resolve(self, transfer_id: str, status: str) -> Outcome:
        """Void (or expire) a pending transfer: release its reservation on both accounts."""
        transfer = self._pending(transfer_id)
        if transfer.status == status:
            return Outcome(transfer.snapshot(), created=False)
        if status == "voided":
            self._check_still_pending(transfer)
        elif transfer.status != "pending":
            raise _state_error(transfer.status)
        elif transfer.expires_at is None or transfer.expires_at > self.now:
            raise errors.PendingTransferNotExpired()
        debit = self.accounts[transfer.debit_account_id]
        credit = self.accounts[transfer.credit_account_id]
        debit.debits_pending -= transfer.amount
        credit.credits_pending -= transfer.amount
        transfer.status = status
        transfer.resolved_at = self.now
        self.resolved_transfers[transfer.id] = transfer
        kind = "void" if status == "voided" else "expire"
        self._record(transfer, debit, credit, kind, transfer.amount)
        return self._applied(f"ledger.transfer.{status}", transfer)

    def _applied(self, event_type: str, transfer: TransferState) -> Outcome:
        """The event and the answer carry a snapshot: a later operation of the same commit
        (another request's post or void) must not change what this one reports."""
        snapshot = transfer.snapshot()
        self.events.append((event_type, snapshot))
        return Outcome(snapshot, created=True)

    # -- checks --------------------------------------------------------------------------

    def _account(self, account_id: str, side: str) -> AccountState:
        account = self.accounts.get(account_id)
        if account is None:
            raise errors.AccountNotFound(detail=f"{side} account {account_id} does not exist")
        return account

    def _pending(self, transfer_id: str) -> TransferState:
        transfer = self.transfers.get(transfer_id)
        if transfer is None:
            raise errors.PendingTransferNotFound(detail=f"no transfer {transfer_id}")
        if not transfer.pending:
            raise errors.PendingTransferNotPending(detail=f"{transfer_id} was posted directly")
        return transfer

    def _check_still_pending(self, transfer: TransferState) -> None:
        if transfer.status != "pending":
            raise _state_error(transfer.status)
        if transfer.expires_at is not None and transfer.expires_at <= self.now:
            raise errors.PendingTransferExpired(detail="its timeout has passed")

    @staticmethod
    def _check_limits(debit: AccountState, credit: AccountState, amount: int) -> None:
        if debit.flags & DEBITS_MUST_NOT_EXCEED_CREDITS and (
            debit.debits_pending + debit.debits_posted + amount > debit.credits_posted
        ):
            raise errors.ExceedsCredits(detail=f"account {debit.id} lacks the funds")
        if credit.flags & CREDITS_MUST_NOT_EXCEED_DEBITS and (
            credit.credits_pending + credit.credits_posted + amount > credit.debits_posted
        ):
            raise errors.ExceedsDebits(detail=f"account {credit.id} would exceed its debits")

    @staticmethod
    def _check_overflow(debit_balance: int, credit_balance: int, amount: int) -> None:
        if debit_balance + amount > MAX_AMOUNT_MINOR or credit_balance + amount > MAX_AMOUNT_MINOR:
            raise errors.Overflow()

    def _record(
        self,
        transfer: TransferState,
        debit: AccountState,
        credit: AccountState,
        kind: str,
        amount: int,
    ) -> None:
        for side, account in (("debit", debit), ("credit", credit)):
            self.dirty_accounts.add(account.id)
            self.entries.append(
                {
                    "account_id": account.id,
                    "transfer_id": transfer.id,
                    "side": side,
                    "kind": kind,
                    "amount": amount,
                    "debits_pending": account.debits_pending,
                    "debits_posted": account.debits_posted,
                    "credits_pending": account.credits_pending,
                    "credits_posted": account.credits_posted,
                    "created_at": self.now,
                }
            )


def _state_error(status: str) -> errors.LedgerError:
    if status == "posted":
        return errors.PendingTransferAlreadyPosted()
    if status == "voided":
        return errors.PendingTransferAlreadyVoided()
    return errors.PendingTransferExpired()
