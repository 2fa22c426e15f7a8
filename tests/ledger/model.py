"""An independent, deliberately naive model of the ledger's rules, for property tests.

It shares nothing with `paymesh.ledger.posting`: plain dicts and one function per
operation, written from the issue's contract (TigerBeetle-style result codes, pending
amounts counted by the flag checks, 2^63-1 per balance, all-or-nothing atomic groups).
Results are `("ok", created, status)` or `("error", code)`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

MAX = 2**63 - 1
DEBITS_LIMITED = "debits_must_not_exceed_credits"
CREDITS_LIMITED = "credits_must_not_exceed_debits"

ModelResult = tuple[Any, ...]


@dataclass
class ModelAccount:
    currency: str
    flag: str | None
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def balances(self) -> tuple[int, int, int, int]:
        return (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)


@dataclass
class ModelTransfer:
    debit: str
    credit: str
    amount: int
    currency: str
    pending: bool
    timeout: int | None
    code: int
    note: str | None
    status: str
    posted_amount: int
    expires_at: int | None


@dataclass(frozen=True)
class Create:
    id: str
    debit: str
    credit: str
    amount: int
    currency: str
    pending: bool = False
    timeout: int | None = None
    code: int = 0
    note: str | None = None
    """Stands for the metadata: `{"note": note}`, or `{}` when None."""


@dataclass(frozen=True)
class Post:
    id: str
    amount: int | None = None


@dataclass(frozen=True)
class Void:
    id: str


@dataclass(frozen=True)
class Expire:
    id: str


Op = Create | Post | Void | Expire


def error(code: str) -> ModelResult:
    return ("error", code)


def ok(created: bool, status: str) -> ModelResult:
    return ("ok", created, status)


@dataclass
class Model:
    accounts: dict[str, ModelAccount] = field(default_factory=dict)
    transfers: dict[str, ModelTransfer] = field(default_factory=dict)
    events: list[tuple[str, str, str, int]] = field(default_factory=list)
    """(type, transfer id, status, posted_amount) of each event, as of its operation."""

    # -- groups --------------------------------------------------------------------------

    def group(self, ops: list[Op], atomic: bool, now: int) -> list[ModelResult]:
        if not atomic:
            return [self.one(op, now) for op in ops]
        saved = copy.deepcopy((self.accounts, self.transfers, self.events))
        results = [self.one(op, now) for op in ops]
        if all(result[0] == "ok" for result in results):
            return results
        self.accounts, self.transfers, self.events = saved
        return [
            result if result[0] == "error" else error("linked_transfer_failed")
            for result in results
        ]

    def one(self, op: Op, now: int) -> ModelResult:
        if isinstance(op, Create):
            result = self.create(op, now)
        elif isinstance(op, Post):
            result = self.post(op, now)
        else:
            result = self.release(op.id, "voided" if isinstance(op, Void) else "expired", now)
        if result[0] == "ok" and result[1]:
            posted_amount = self.transfers[op.id].posted_amount
            self.events.append((f"ledger.transfer.{result[2]}", op.id, result[2], posted_amount))
        return result

    # -- operations ----------------------------------------------------------------------

    def create(self, op: Create, now: int) -> ModelResult:
        if op.amount < 1:
            return error("amount_must_be_positive")
        if op.debit == op.credit:
            return error("accounts_must_be_different")
        if op.timeout is not None and not op.pending:
            return error("timeout_reserved_for_pending_transfer")
        if op.id in self.transfers:
            old = self.transfers[op.id]
            kept = (old.debit, old.credit, old.amount, old.currency, old.pending, old.timeout)
            asked = (op.debit, op.credit, op.amount, op.currency, op.pending, op.timeout)
            same = (*kept, old.code, old.note) == (*asked, op.code, op.note)
            return ok(False, old.status) if same else error("exists_with_different_fields")
        if op.debit not in self.accounts or op.credit not in self.accounts:
            return error("account_not_found")
        debit, credit = self.accounts[op.debit], self.accounts[op.credit]
        if op.currency != debit.currency or op.currency != credit.currency:
            return error("currency_mismatch")
        debit_total = debit.debits_pending + debit.debits_posted + op.amount
        if debit.flag == DEBITS_LIMITED and debit_total > debit.credits_posted:
            return error("exceeds_credits")
        credit_total = credit.credits_pending + credit.credits_posted + op.amount
        if credit.flag == CREDITS_LIMITED and credit_total > credit.debits_posted:
            return error("exceeds_debits")
        if op.pending:
            if max(debit.debits_pending, credit.credits_pending) + op.amount > MAX:
                return error("overflow")
            debit.debits_pending += op.amount
            credit.credits_pending += op.amount
        else:
            if max(debit.debits_posted, credit.credits_posted) + op.amount > MAX:
                return error("overflow")
            debit.debits_posted += op.amount
            credit.credits_posted += op.amount
        status = "pending" if op.pending else "posted"
        self.transfers[op.id] = ModelTransfer(
            debit=op.debit,
            credit=op.credit,
            amount=op.amount,
            currency=op.currency,
            pending=op.pending,
            timeout=op.timeout,
            code=op.code,
            note=op.note,
            status=status,
            posted_amount=0 if op.pending else op.amount,
            expires_at=now + op.timeout if op.timeout else None,
        )
        return ok(True, status)

    def _find_pending(self, transfer_id: str) -> ModelTransfer | ModelResult:
        found = self.transfers.get(transfer_id)
        if found is None:
            return error("pending_transfer_not_found")
        if not found.pending:
            return error("pending_transfer_not_pending")
        return found

    @staticmethod
    def _refusal(found: ModelTransfer, now: int) -> ModelResult | None:
        """Why a pending transfer can no longer be posted or voided, if it cannot."""
        codes = {
            "posted": "pending_transfer_already_posted",
            "voided": "pending_transfer_already_voided",
            "expired": "pending_transfer_expired",
        }
        if found.status in codes:
            return error(codes[found.status])
        if found.expires_at is not None and now >= found.expires_at:
            return error("pending_transfer_expired")
        return None

    def post(self, op: Post, now: int) -> ModelResult:
        found = self._find_pending(op.id)
        if isinstance(found, tuple):
            return found
        if found.status == "posted" and op.amount in (None, found.posted_amount):
            return ok(False, "posted")
        refusal = self._refusal(found, now)
        if refusal is not None:
            return refusal
        amount = found.amount if op.amount is None else op.amount
        if amount < 1:
            return error("amount_must_be_positive")
        if amount > found.amount:
            return error("exceeds_pending_amount")
        debit, credit = self.accounts[found.debit], self.accounts[found.credit]
        if max(debit.debits_posted, credit.credits_posted) + amount > MAX:
            return error("overflow")
        debit.debits_pending -= found.amount
        credit.credits_pending -= found.amount
        debit.debits_posted += amount
        credit.credits_posted += amount
        found.status = "posted"
        found.posted_amount = amount
        return ok(True, "posted")

    def release(
        self, transfer_id: str, status: Literal["voided", "expired"], now: int
    ) -> ModelResult:
        found = self._find_pending(transfer_id)
        if isinstance(found, tuple):
            return found
        if found.status == status:
            return ok(False, status)
        if status == "voided":
            refusal = self._refusal(found, now)
            if refusal is not None:
                return refusal
        elif found.status != "pending":
            return self._refusal(found, now) or error("unreachable")
        elif found.expires_at is None or now < found.expires_at:
            return error("pending_transfer_not_expired")
        debit, credit = self.accounts[found.debit], self.accounts[found.credit]
        debit.debits_pending -= found.amount
        credit.credits_pending -= found.amount
        found.status = status
        return ok(True, status)

    # -- views ---------------------------------------------------------------------------

    def totals(self, currency: str) -> tuple[int, int, int, int]:
        """Per-currency sums of (debits_pending, debits_posted, credits_pending, credits_posted)."""
        mine = [a for a in self.accounts.values() if a.currency == currency]
        return (
            sum(a.debits_pending for a in mine),
            sum(a.debits_posted for a in mine),
            sum(a.credits_pending for a in mine),
            sum(a.credits_posted for a in mine),
        )
