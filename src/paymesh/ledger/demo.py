"""Demo data for `make run` (embedded shape only): a funded USD and EUR treasury, wallets
for alice and bob, and the FX liquidity and fee accounts the README tour uses. Fixed ids,
so seeding again changes nothing."""

from __future__ import annotations

from paymesh.kernel.runtime import ServiceRuntime
from paymesh.ledger.schemas import AccountCreate, AccountFlags, TransferCreate
from paymesh.ledger.service import LedgerService

WALLET = AccountFlags(debits_must_not_exceed_credits=True)

ACCOUNTS = [
    AccountCreate(id="demo_treasury_usd", currency="USD", code=1),
    AccountCreate(id="demo_treasury_eur", currency="EUR", code=1),
    AccountCreate(id="demo_fx_liquidity_usd", currency="USD", code=3, flags=WALLET),
    AccountCreate(id="demo_fx_liquidity_eur", currency="EUR", code=3, flags=WALLET),
    AccountCreate(id="demo_fees_usd", currency="USD", code=4),
    AccountCreate(id="demo_alice_usd", currency="USD", code=2, flags=WALLET),
    AccountCreate(id="demo_alice_eur", currency="EUR", code=2, flags=WALLET),
    AccountCreate(id="demo_bob_usd", currency="USD", code=2, flags=WALLET),
    # The FX liquidity pools cross-currency payments go through (payments' default
    # PAYMESH_PAYMENTS_FX_LIQUIDITY_ACCOUNT_PREFIX).
    AccountCreate(id="fx_liquidity_usd", currency="USD", code=3, flags=WALLET),
    AccountCreate(id="fx_liquidity_eur", currency="EUR", code=3, flags=WALLET),
]

FUNDING = [
    ("demo_fund_alice_usd", "demo_treasury_usd", "demo_alice_usd", 100_000, "USD"),
    ("demo_fund_bob_usd", "demo_treasury_usd", "demo_bob_usd", 50_000, "USD"),
    ("demo_fund_fx_usd", "demo_treasury_usd", "demo_fx_liquidity_usd", 1_000_000, "USD"),
    ("demo_fund_fx_eur", "demo_treasury_eur", "demo_fx_liquidity_eur", 1_000_000, "EUR"),
    ("demo_fund_fx_pool_usd", "demo_treasury_usd", "fx_liquidity_usd", 10_000_000, "USD"),
    ("demo_fund_fx_pool_eur", "demo_treasury_eur", "fx_liquidity_eur", 10_000_000, "EUR"),
]


async def seed_demo(runtime: ServiceRuntime) -> None:
    service: LedgerService = runtime.state["ledger"]
    async with runtime.database.transaction() as session:
        for account in ACCOUNTS:
            await service.create_account(session, account)
    for transfer_id, debit, credit, amount, currency in FUNDING:
        await service.create_transfer(
            TransferCreate(
                id=transfer_id,
                debit_account_id=debit,
                credit_account_id=credit,
                amount=amount,
                currency=currency,
                metadata={"purpose": "demo funding"},
            )
        )
