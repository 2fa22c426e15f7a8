"""What each wallet operation asks of the ledger, with ids that make a repeat harmless.

* deposit: clearing -> wallet, posted; withdrawal: wallet -> clearing, posted. The
  clearing account (`wallets_clearing_<ccy>`) stands for the platform's money at its bank.
* hold: wallet -> holds account (`wallets_holds_<ccy>`), pending, with the hold's timeout,
  so the ledger releases it by itself if nobody captures or releases it in time.
* capture: post (all or part of) the hold's pending transfer; release: void it.

The transfer id is the operation id, so sending the same operation again returns the
original transfer. The per-currency platform accounts are created on first use (creating
an existing account with the same fields is a no-op in the ledger).
"""

from __future__ import annotations

from typing import Any

from paymesh.ledger.client import LedgerClient
from paymesh.ledger.schemas import AccountCreate, Transfer, TransferCreate

CLEARING_CODE = 10
HOLDS_CODE = 11
TRANSFER_CODES = {"deposit": 1, "withdrawal": 2, "hold": 3}


def clearing_account(currency: str) -> str:
    return f"wallets_clearing_{currency.lower()}"


def holds_account(currency: str) -> str:
    return f"wallets_holds_{currency.lower()}"


class Postings:
    def __init__(self, ledger: LedgerClient) -> None:
        self.ledger = ledger
        self._known_accounts: set[str] = set()

    async def apply(self, row: Any, wallet_account: str, hold: Any) -> Transfer:
        """Send the operation `row` to the ledger; its resulting transfer."""
        metadata = {"wallet_id": row.wallet_id, "operation": row.kind}
        if row.reference is not None:
            metadata["reference"] = row.reference
        if row.kind in ("deposit", "withdrawal"):
            clearing = await self._account(clearing_account(row.currency), row.currency)
            debit, credit = (
                (clearing, wallet_account) if row.kind == "deposit" else (wallet_account, clearing)
            )
            return await self.ledger.create_transfer(
                TransferCreate(
                    id=row.id,
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=row.amount,
                    currency=row.currency,
                    code=TRANSFER_CODES[row.kind],
                    metadata=metadata,
                )
            )
        if row.kind == "hold":
            holds = await self._account(holds_account(row.currency), row.currency)
            return await self.ledger.create_transfer(
                TransferCreate(
                    id=row.id,
                    debit_account_id=wallet_account,
                    credit_account_id=holds,
                    amount=row.amount,
                    currency=row.currency,
                    code=TRANSFER_CODES["hold"],
                    pending=True,
                    timeout_seconds=hold.expires_in_seconds,
                    metadata=metadata | {"hold_id": hold.id},
                )
            )
        if row.kind == "capture":
            return await self.ledger.post_pending(hold.transfer_id, row.amount)
        return await self.ledger.void_pending(hold.transfer_id)

    async def _account(self, account_id: str, currency: str) -> str:
        if account_id not in self._known_accounts:
            code = CLEARING_CODE if account_id.startswith("wallets_clearing") else HOLDS_CODE
            await self.ledger.create_account(
                AccountCreate(id=account_id, currency=currency, code=code)
            )
            self._known_accounts.add(account_id)
        return account_id
