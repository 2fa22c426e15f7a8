"""Wallets service: customer balances on ledger accounts, holds, deposits and withdrawals."""
