"""Wallet result codes, named after the condition.

State conflicts are 409, payload problems 422, missing things 404 (also for a wallet the
caller may not see: its existence is not disclosed).
"""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class WalletsError(PaymeshError):
    code = "wallets_error"
    status = 409
    title = "The wallets service refused the operation"


class WalletNotFound(WalletsError):
    code = "wallet_not_found"
    status = 404
    title = "Wallet not found"


class HoldNotFound(WalletsError):
    code = "hold_not_found"
    status = 404
    title = "Hold not found"


class WalletExists(WalletsError):
    code = "wallet_exists"
    status = 409
    title = "The customer already has a wallet in this currency"


class WalletNotActive(WalletsError):
    code = "wallet_not_active"
    status = 409
    title = "The wallet is closed or not yet open"


class WalletFrozen(WalletsError):
    code = "wallet_frozen"
    status = 409
    title = "The wallet is frozen: it cannot be debited"


class WalletNotFrozen(WalletsError):
    code = "wallet_not_frozen"
    status = 409
    title = "The wallet is not frozen"


class BalanceNotZero(WalletsError):
    code = "balance_not_zero"
    status = 409
    title = "A wallet closes only with a zero balance and no open holds"


class InsufficientFunds(WalletsError):
    code = "insufficient_funds"
    status = 409
    title = "The wallet's available balance is lower than the amount"


class HoldNotActive(WalletsError):
    code = "hold_not_active"
    status = 409
    title = "The hold is already captured, released or expired"


class HoldExpired(WalletsError):
    code = "hold_expired"
    status = 409
    title = "The hold has expired; its funds were released"


class ExceedsHoldAmount(WalletsError):
    code = "exceeds_hold_amount"
    status = 422
    title = "The amount to capture exceeds the hold"


class HoldTooLong(WalletsError):
    code = "hold_too_long"
    status = 422
    title = "expires_in_seconds exceeds the longest hold allowed"


class IdempotencyKeyRequired(WalletsError):
    code = "idempotency_key_required"
    status = 400
    title = "This operation moves money: send an Idempotency-Key header"


class OperationFailed(WalletsError):
    code = "operation_failed"
    status = 409
    title = "The ledger refused the operation"
