"""Ledger result codes, named after the condition (after TigerBeetle's result codes).

Balance and state conflicts are 409, payload problems 422, missing things 404.
"""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class LedgerError(PaymeshError):
    code = "ledger_error"
    status = 409
    title = "The ledger refused the operation"


class AccountNotFound(LedgerError):
    code = "account_not_found"
    status = 404
    title = "Account not found"


class TransferNotFound(LedgerError):
    code = "transfer_not_found"
    status = 404
    title = "Transfer not found"


class PendingTransferNotFound(LedgerError):
    code = "pending_transfer_not_found"
    status = 404
    title = "Pending transfer not found"


class AccountsMustBeDifferent(LedgerError):
    code = "accounts_must_be_different"
    status = 422
    title = "Debit and credit accounts must be different"


class CurrencyMismatch(LedgerError):
    code = "currency_mismatch"
    status = 422
    title = "The transfer's currency differs from an account's"


class AmountMustBePositive(LedgerError):
    code = "amount_must_be_positive"
    status = 422
    title = "The amount must be a positive integer of minor units"


class TimeoutReservedForPendingTransfer(LedgerError):
    code = "timeout_reserved_for_pending_transfer"
    status = 422
    title = "timeout_seconds is only allowed on pending transfers"


class FlagsAreMutuallyExclusive(LedgerError):
    code = "flags_are_mutually_exclusive"
    status = 422
    title = "An account cannot limit both debits and credits"


class ExceedsCredits(LedgerError):
    code = "exceeds_credits"
    status = 409
    title = "The debit would exceed the account's credits"


class ExceedsDebits(LedgerError):
    code = "exceeds_debits"
    status = 409
    title = "The credit would exceed the account's debits"


class Overflow(LedgerError):
    code = "overflow"
    status = 409
    title = "A balance would exceed 2^63-1 minor units"


class ExistsWithDifferentFields(LedgerError):
    code = "exists_with_different_fields"
    status = 409
    title = "An object with this id exists with different fields"


class PendingTransferNotPending(LedgerError):
    code = "pending_transfer_not_pending"
    status = 409
    title = "The transfer was not created as pending"


class PendingTransferAlreadyPosted(LedgerError):
    code = "pending_transfer_already_posted"
    status = 409
    title = "The pending transfer is already posted"


class PendingTransferAlreadyVoided(LedgerError):
    code = "pending_transfer_already_voided"
    status = 409
    title = "The pending transfer is already voided"


class PendingTransferExpired(LedgerError):
    code = "pending_transfer_expired"
    status = 409
    title = "The pending transfer has expired"


class PendingTransferNotExpired(LedgerError):
    code = "pending_transfer_not_expired"
    status = 409
    title = "The pending transfer's timeout has not passed"


class ExceedsPendingAmount(LedgerError):
    code = "exceeds_pending_amount"
    status = 422
    title = "The amount to post exceeds the pending amount"


class LinkedTransferFailed(LedgerError):
    code = "linked_transfer_failed"
    status = 409
    title = "Another transfer of the atomic batch failed"


class LedgerOverloaded(LedgerError):
    code = "ledger_overloaded"
    status = 503
    title = "The ledger has too much work queued; retry with backoff"


class BatchTooLarge(LedgerError):
    code = "batch_too_large"
    status = 422
    title = "Too many transfers in one batch"


class InvalidCursor(LedgerError):
    code = "invalid_cursor"
    status = 422
    title = "The cursor is not valid"


TRANSFER_ERRORS: tuple[type[LedgerError], ...] = (
    AccountNotFound,
    AccountsMustBeDifferent,
    CurrencyMismatch,
    AmountMustBePositive,
    TimeoutReservedForPendingTransfer,
    ExceedsCredits,
    ExceedsDebits,
    Overflow,
    ExistsWithDifferentFields,
    LedgerOverloaded,
)
PENDING_ERRORS: tuple[type[LedgerError], ...] = (
    PendingTransferNotFound,
    PendingTransferNotPending,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    ExceedsPendingAmount,
    AmountMustBePositive,
    Overflow,
)
