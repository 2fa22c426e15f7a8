"""The ledger batches a payment books: one atomic batch per payment (and per reversal),
its transfer ids derived from the payment's, so a retried step finds `exists` and never
moves money twice.

P2P: payer → payee `amount`; payer → fees `fee`.
Cross-currency: forex's booking of the quote (payer → FX liquidity in the source currency,
the markup to FX revenue, FX liquidity → payee in the destination currency) and the fee.
Payout: a pending transfer payer → payout clearing `amount + fee` (`<payment id>_reserve`),
posted when the partner bank settles — then the fee moves on, payout clearing → fees
(`<payment id>_fee`) — or voided when it rejects or the payout times out.
A reversal: each leg inverted pro rata — payee → payer (p2p) or payee → FX liquidity in the
destination currency, FX liquidity and FX revenue → payer in the source currency
(cross-currency) — and fees → payer (the fee refunded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from paymesh.forex.client import FxAccounts, ledger_transfers
from paymesh.forex.schemas import Quote
from paymesh.kernel.config import PaymentsSettings
from paymesh.kernel.errors import RemoteServiceError
from paymesh.ledger.client import LedgerClient
from paymesh.ledger.schemas import AccountCreate, AccountFlags, TransferBatch, TransferCreate

FEES_CODE = 4
LIQUIDITY_CODE = 3
PAYMENT_CODE = 10
REVERSAL_CODE = 11
PAYOUT_CODE = 12
CLEARING_CODE = 5
PAYEE_LEG = "amount"  # a reversal's leg that debits the payee: `<reversal id>_amount`
RESERVATION_GONE = frozenset({"pending_transfer_already_voided", "pending_transfer_expired"})
"""A payout's reservation that can no longer be posted: the money went back to the payer."""
NEVER_RESERVED = frozenset({"pending_transfer_not_found", "transfer_not_found"})


class Booking:
    """Builds and posts the batches; knows the platform's own accounts."""

    def __init__(self, ledger: LedgerClient, settings: PaymentsSettings) -> None:
        self.ledger = ledger
        self.settings = settings
        self._known: set[str] = set()
        self._creating: dict[str, asyncio.Lock] = {}

    def fees_account(self, currency: str) -> str:
        return f"{self.settings.fees_account_prefix}{currency.lower()}"

    def payout_clearing_account(self, currency: str) -> str:
        return f"{self.settings.payout_clearing_account_prefix}{currency.lower()}"

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

    async def payout_reservation(self, payment: Any) -> TransferBatch:
        """The payout's reservation: amount and fee, payer → payout clearing, pending (the
        payer's available balance drops at once), expiring after
        `payout_reservation_timeout_seconds` — longer than any bank's status timeout."""
        await self.ensure_account(
            payment.destination_account_id, payment.currency, CLEARING_CODE, guarded=False
        )
        reserve = TransferCreate(
            id=f"{payment.id}_reserve",
            debit_account_id=payment.source_account_id,
            credit_account_id=payment.destination_account_id,
            amount=payment.amount + payment.fee,
            currency=payment.currency,
            code=PAYOUT_CODE,
            pending=True,
            timeout_seconds=self.settings.payout_reservation_timeout_seconds,
            metadata={"payment_id": payment.id},
        )
        return TransferBatch(transfers=[reserve], atomic=True)

    async def settle_payout(self, payment: Any) -> bool:
        """Post the reservation and move the fee on to the fees account. False when the
        reservation had ended already (voided or expired: the payer has the money back);
        again after a crash, each step finds itself done."""
        try:
            await self.ledger.post_pending(f"{payment.id}_reserve")
        except RemoteServiceError as error:
            if error.remote_code in RESERVATION_GONE:
                return False
            if error.remote_code != "pending_transfer_already_posted":
                raise
        if payment.fee > 0:
            fees = self.fees_account(payment.currency)
            await self.ensure_account(fees, payment.currency, FEES_CODE, guarded=False)
            await self.ledger.create_transfer(
                TransferCreate(
                    id=f"{payment.id}_fee",
                    debit_account_id=payment.destination_account_id,
                    credit_account_id=fees,
                    amount=payment.fee,
                    currency=payment.currency,
                    code=PAYOUT_CODE,
                    metadata={"payment_id": payment.id},
                )
            )
        return True

    async def release_payout(self, payment: Any) -> bool:
        """Void the reservation: the payer has amount and fee back. False when it had been
        posted (the bank settled before it rejected: nothing to give back)."""
        try:
            await self.ledger.void_pending(f"{payment.id}_reserve")
        except RemoteServiceError as error:
            if error.remote_code == "pending_transfer_already_posted":
                return False
            if error.remote_code not in RESERVATION_GONE | NEVER_RESERVED:
                raise
        return True

    async def reversal_batch(
        self,
        payment: Any,
        reversal_id: str,
        amount: int,
        fee_refund: int,
        *,
        destination_amount: int | None = None,
        markup_refund: int | None = None,
    ) -> TransferBatch:
        """The compensating batch: each leg of the payment's batch inverted, pro rata.

        P2P: payee → payer `amount`. Cross-currency (`destination_amount` and
        `markup_refund` given): payee → FX liquidity (destination currency)
        `destination_amount`; FX liquidity → payer `amount - markup_refund` and FX revenue
        → payer `markup_refund` (source currency). Both: fees → payer `fee_refund`. The
        payee's leg is always `<reversal id>_amount` (see `PAYEE_LEG`)."""
        meta = {"payment_id": payment.id, "reversal_id": reversal_id}
        legs: list[tuple[str, str, str, int, str]] = []
        if destination_amount is None:
            legs.append(
                (
                    PAYEE_LEG,
                    payment.destination_account_id,
                    payment.source_account_id,
                    amount,
                    payment.currency,
                )
            )
        else:
            legs.extend(
                self._fx_reversal_legs(payment, amount, destination_amount, markup_refund or 0)
            )
        legs.append(
            (
                "fee",
                self.fees_account(payment.currency),
                payment.source_account_id,
                fee_refund,
                payment.currency,
            )
        )
        transfers = [
            TransferCreate(
                id=f"{reversal_id}_{leg}",
                debit_account_id=debit,
                credit_account_id=credit,
                amount=leg_amount,
                currency=currency,
                code=REVERSAL_CODE,
                metadata=meta,
            )
            for leg, debit, credit, leg_amount, currency in legs
            if leg_amount > 0  # the ledger refuses zero transfers
        ]
        return TransferBatch(transfers=transfers, atomic=True)

    def _fx_reversal_legs(
        self, payment: Any, amount: int, destination_amount: int, markup_refund: int
    ) -> list[tuple[str, str, str, int, str]]:
        # Each leg of forex's booking (`ledger_transfers`) in reverse, so a full reversal
        # leaves the liquidity and revenue accounts where they were: the FX desk gives back
        # at the quote's rate and bears any move since.
        accounts = self.fx_accounts(payment)
        return [
            (
                PAYEE_LEG,
                accounts.customer_target,
                accounts.liquidity_target,
                destination_amount,
                payment.destination_currency,
            ),
            (
                "source",
                accounts.liquidity_source,
                accounts.customer_source,
                amount - markup_refund,
                payment.currency,
            ),
            (
                "markup",
                accounts.revenue_source,
                accounts.customer_source,
                markup_refund,
                payment.currency,
            ),
        ]


def pro_rata_share(total: int, *, part: int, whole: int, given: int, completes: bool) -> int:
    """The share of `total` that goes with `part` of `whole` (minor units): rounded down,
    except for the part that completes `whole`, which takes exactly what is left of
    `total` after the `given` shares. The shares of any series sum to `total` exactly,
    never more (the rounding of the earlier ones falls to the last)."""
    if completes:
        return total - given
    return total * part // whole


def cumulative_share(total: int, *, part: int, whole: int, done: int, given: int) -> int:
    """The share of `total` that goes with `part` of `whole` when `done` of it went before
    with `given` of `total`: `floor(total * (done + part) / whole) - given`, kept within
    0..`part` (`total` ≤ `whole`). Every share is within one unit of its exact value and
    the series sums to `total` once `whole` is done — `pricing.refund_fee`'s rule."""
    share = total * (done + part) // whole - given
    return max(0, min(share, part))


def first_failure(results: Sequence[Any]) -> tuple[str, str] | None:
    """The id and code of the transfer that failed a batch (not one that failed only with
    it), or None when all applied."""
    for result in results:
        if result.status == "failed" and result.code != "linked_transfer_failed":
            return str(result.id), str(result.code)
    for result in results:
        if result.status == "failed":
            return str(result.id), str(result.code)
    return None


def failure_code(results: Sequence[Any]) -> str | None:
    """The first failing transfer's code in a batch's results, or None when all applied."""
    failure = first_failure(results)
    return None if failure is None else failure[1]
