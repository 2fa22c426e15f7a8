"""The ledger batches a payment books: one atomic batch per payment (and per reversal),
its transfer ids derived from the payment's, so a retried step finds `exists` and never
moves money twice.

P2P: payer → payee `amount`; payer → fees `fee`.
Cross-currency: forex's booking of the quote (payer → FX liquidity in the source currency,
the markup to FX revenue, FX liquidity → payee in the destination currency) and the fee.
A reversal: payee → payer (what is reversed), fees → payer (the fee refunded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from paymesh.forex.client import FxAccounts, ledger_transfers
from paymesh.forex.schemas import Quote
from paymesh.kernel.config import PaymentsSettings
from paymesh.ledger.client import LedgerClient
from paymesh.ledger.schemas import AccountCreate, AccountFlags, TransferBatch, TransferCreate

FEES_CODE = 4
LIQUIDITY_CODE = 3
PAYMENT_CODE = 10
REVERSAL_CODE = 11


class Booking:
    """Builds and posts the batches; knows the platform's own accounts."""

    def __init__(self, ledger: LedgerClient, settings: PaymentsSettings) -> None:
        self.ledger = ledger
        self.settings = settings
        self._known: set[str] = set()
        self._creating: dict[str, asyncio.Lock] = {}

    def fees_account(self, currency: str) -> str:
        return f"{self.settings.fees_account_prefix}{currency.lower()}"

    def fx_accounts(self, payment: Any) -> FxAccounts:
        prefix, revenue = (
            self.settings.fx_liquidity_account_prefix,
            self.settings.fx_revenue_account_prefix,
        )
        return FxAccounts(
            customer_source=payment.source_account_id,
            customer_target=payment.destination_account_id,
            liquidity_source=f"{prefix}{payment.currency.lower()}",
            liquidity_target=f"{prefix}{payment.destination_currency.lower()}",
            revenue_source=f"{revenue}{payment.currency.lower()}",
        )

    async def ensure_account(
        self, account_id: str, currency: str, code: int, *, guarded: bool
    ) -> None:
        """Create a platform account once per process (creating it again is a no-op)."""
        if account_id in self._known:
            return
        async with self._creating.setdefault(account_id, asyncio.Lock()):  # once, not 80 times
            if account_id in self._known:
                return
            await self._create(account_id, currency, code, guarded=guarded)

    async def _create(self, account_id: str, currency: str, code: int, *, guarded: bool) -> None:
        flags = AccountFlags(debits_must_not_exceed_credits=guarded)
        await self.ledger.create_account(
            AccountCreate(id=account_id, currency=currency, code=code, flags=flags)
        )
        self._known.add(account_id)

    async def payment_batch(self, payment: Any, quote: Quote | None) -> TransferBatch:
        meta = {"payment_id": payment.id}
        transfers: list[TransferCreate] = []
        if payment.type == "cross_currency":
            assert quote is not None
            accounts = self.fx_accounts(payment)
            await self.ensure_account(
                accounts.liquidity_source, payment.currency, LIQUIDITY_CODE, guarded=True
            )
            await self.ensure_account(
                accounts.liquidity_target,
                payment.destination_currency,
                LIQUIDITY_CODE,
                guarded=True,
            )
            await self.ensure_account(
                accounts.revenue_source, payment.currency, FEES_CODE, guarded=False
            )
            transfers.extend(ledger_transfers(quote, accounts))
        else:
            transfers.append(
                TransferCreate(
                    id=f"{payment.id}_amount",
                    debit_account_id=payment.source_account_id,
                    credit_account_id=payment.destination_account_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    code=PAYMENT_CODE,
                    metadata=meta,
                )
            )
        if payment.fee > 0:
            fees = self.fees_account(payment.currency)
            await self.ensure_account(fees, payment.currency, FEES_CODE, guarded=False)
            transfers.append(
                TransferCreate(
                    id=f"{payment.id}_fee",
                    debit_account_id=payment.source_account_id,
                    credit_account_id=fees,
                    amount=payment.fee,
                    currency=payment.currency,
                    code=PAYMENT_CODE,
                    metadata=meta,
                )
            )
        return TransferBatch(transfers=transfers, atomic=True)

    async def reversal_batch(
        self, payment: Any, reversal_id: str, amount: int, fee_refund: int
    ) -> TransferBatch:
        meta = {"payment_id": payment.id, "reversal_id": reversal_id}
        transfers = [
            TransferCreate(
                id=f"{reversal_id}_amount",
                debit_account_id=payment.destination_account_id,
                credit_account_id=payment.source_account_id,
                amount=amount,
                currency=payment.currency,
                code=REVERSAL_CODE,
                metadata=meta,
            )
        ]
        if fee_refund > 0:
            transfers.append(
                TransferCreate(
                    id=f"{reversal_id}_fee",
                    debit_account_id=self.fees_account(payment.currency),
                    credit_account_id=payment.source_account_id,
                    amount=fee_refund,
                    currency=payment.currency,
                    code=REVERSAL_CODE,
                    metadata=meta,
                )
            )
        return TransferBatch(transfers=transfers, atomic=True)


def failure_code(results: Sequence[Any]) -> str | None:
    """The first failing transfer's code in a batch's results, or None when all applied."""
    for result in results:
        if result.status == "failed" and result.code != "linked_transfer_failed":
            return str(result.code)
    for result in results:
        if result.status == "failed":
            return str(result.code)
    return None
