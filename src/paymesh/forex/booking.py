"""How a quote is booked on the ledger (used by payments): one atomic ledger batch.

For a customer converting `from_amount` of currency A into `to_amount` of currency B:

1. customer's A wallet -> FX liquidity A: the part of `from_amount` worth `to_amount` at the
   mid rate (rounded up: the liquidity pool is never short-changed);
2. customer's A wallet -> FX revenue A: the rest of `from_amount`, the markup;
3. FX liquidity B -> customer's B wallet: `to_amount`.

Each currency balances on its own (the ledger's transfers are single-currency); the
platform's FX position is the liquidity accounts' balances. Sent as one `atomic: true`
batch with ids derived from the quote id, so it applies entirely or not at all and a
retry is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from paymesh.forex import pricing
from paymesh.forex.schemas import Quote
from paymesh.ledger.schemas import TransferCreate


@dataclass(frozen=True)
class FxAccounts:
    """The ledger accounts one conversion touches."""

    customer_source: str
    customer_target: str
    liquidity_source: str
    liquidity_target: str
    revenue_source: str


def markup_amount(quote: Quote) -> int:
    """Minor units of the source currency the markup earned: what the customer paid less
    what `to_amount` costs at the mid rate (rounded up, so revenue is never overstated)."""
    if quote.to_amount < 1:
        return 0
    at_mid = pricing.paid(
        quote.to_amount, quote.from_currency, quote.to_currency, Decimal(quote.mid_rate)
    )
    return max(0, quote.from_amount - at_mid)


def ledger_transfers(quote: Quote, accounts: FxAccounts) -> list[TransferCreate]:
    """The transfers that book `quote` (zero legs left out: the ledger refuses them)."""
    markup = markup_amount(quote)
    metadata = {"quote_id": quote.id, "rate": quote.customer_rate, "mid_rate": quote.mid_rate}
    legs = [
        (
            "in",
            accounts.customer_source,
            accounts.liquidity_source,
            quote.from_amount - markup,
            quote.from_currency,
        ),
        ("fee", accounts.customer_source, accounts.revenue_source, markup, quote.from_currency),
        (
            "out",
            accounts.liquidity_target,
            accounts.customer_target,
            quote.to_amount,
            quote.to_currency,
        ),
    ]
    return [
        TransferCreate(
            id=f"{quote.id}_{leg}",
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            currency=currency,
            metadata=metadata,
        )
        for leg, debit, credit, amount, currency in legs
        if amount > 0
    ]
