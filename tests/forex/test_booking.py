"""Booking a quote on the ledger: one atomic batch through the FX liquidity accounts, the
markup to revenue; checked as data and against the real ledger."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymesh.forex import pricing
from paymesh.forex.booking import FxAccounts, ledger_transfers, markup_amount
from paymesh.forex.schemas import Quote
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.forex.factories import quote, service_caller

ACCOUNTS = FxAccounts(
    customer_source="alice_usd",
    customer_target="alice_eur",
    liquidity_source="fx_liquidity_usd",
    liquidity_target="fx_liquidity_eur",
    revenue_source="fx_revenue_usd",
)


def a_quote(from_amount: int, to_amount: int, mid: str, customer: str) -> Quote:
    return Quote.model_validate(
        {
            "id": "qte_test",
            "owner": "alice",
            "from": "USD",
            "to": "EUR",
            "side": "sell",
            "from_amount": from_amount,
            "to_amount": to_amount,
            "mid_rate": mid,
            "customer_rate": customer,
            "markup_bps": 50,
            "rate_date": "2024-05-31",
            "source": "ecb",
            "status": "open",
            "created_at": "2024-05-31T12:00:00Z",
            "expires_at": "2024-05-31T12:00:30Z",
        }
    )


class TestLedgerTransfers:
    def test_three_legs_that_balance_per_currency(self) -> None:
        mid = Decimal("0.921489126428")
        customer = pricing.customer_rate(mid, 50)
        received = pricing.received(10_000, "USD", "EUR", customer)  # 91.68 EUR
        booked = ledger_transfers(a_quote(10_000, received, str(mid), str(customer)), ACCOUNTS)

        legs = {transfer.id: transfer for transfer in booked}
        assert set(legs) == {"qte_test_in", "qte_test_fee", "qte_test_out"}
        usd = [transfer for transfer in booked if transfer.currency == "USD"]
        assert sum(transfer.amount for transfer in usd) == 10_000
        assert all(transfer.debit_account_id == "alice_usd" for transfer in usd)
        assert legs["qte_test_out"].amount == received
        assert legs["qte_test_out"].debit_account_id == "fx_liquidity_eur"
        assert legs["qte_test_fee"].credit_account_id == "fx_revenue_usd"
        # What went to liquidity buys the EUR at the mid rate, rounded up for the pool.
        assert legs["qte_test_in"].amount == pricing.paid(received, "USD", "EUR", mid)

    def test_no_markup_no_fee_leg(self) -> None:
        mid = Decimal("0.921489126428")
        received = pricing.received(10_000, "USD", "EUR", mid)
        booked = ledger_transfers(a_quote(10_000, received, str(mid), str(mid)), ACCOUNTS)

        assert [transfer.id for transfer in booked] == ["qte_test_in", "qte_test_out"]

    @given(
        amount=st.integers(min_value=1, max_value=10**14),
        mid=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=6),
        markup_bps=st.integers(min_value=0, max_value=1000),
    )
    @settings(max_examples=200, deadline=None)
    def test_revenue_is_never_negative_and_source_legs_sum_to_what_was_paid(
        self, amount: int, mid: Decimal, markup_bps: int
    ) -> None:
        customer = pricing.customer_rate(mid, markup_bps)
        try:
            received = pricing.received(amount, "USD", "EUR", customer)
        except Exception:
            return
        booked = a_quote(amount, received, str(mid), str(customer))
        assert 0 <= markup_amount(booked) < amount
        legs = ledger_transfers(booked, ACCOUNTS)
        assert sum(leg.amount for leg in legs if leg.currency == "USD") == amount


class TestBookedOnTheLedger:
    @pytest.mark.parametrize("side", ["sell", "buy"])
    async def test_a_quote_books_as_one_atomic_batch(
        self, make_platform: Callable[..., Any], side: str
    ) -> None:
        platform: Platform = await make_platform(["ledger", "forex"], run_workers=False)
        async with http_client(platform) as http:
            service = service_caller(platform)
            ledger = {
                "authorization": "Bearer "
                + platform.tokens.issue("service-payments", roles=["service"], scopes=["ledger"])
            }
            for account_id, currency in (
                ("alice_usd", "USD"),
                ("alice_eur", "EUR"),
                ("fx_liquidity_usd", "USD"),
                ("fx_liquidity_eur", "EUR"),
                ("fx_revenue_usd", "USD"),
                ("treasury_usd", "USD"),
                ("treasury_eur", "EUR"),
            ):
                created = await http.post(
                    "/v1/ledger/accounts",
                    json={"id": account_id, "currency": currency},
                    headers=ledger,
                )
                assert created.status_code == 201, created.text
            for funding, debit, credit, currency in (
                ("fund_alice", "treasury_usd", "alice_usd", "USD"),
                ("fund_fx", "treasury_eur", "fx_liquidity_eur", "EUR"),
            ):
                body = {
                    "id": funding,
                    "debit_account_id": debit,
                    "credit_account_id": credit,
                    "amount": 1_000_000,
                    "currency": currency,
                }
                assert (
                    await http.post("/v1/ledger/transfers", json=body, headers=ledger)
                ).status_code == 201
            terms = Quote.model_validate(await quote(http, service, amount=12_345, side=side))

            batch = {
                "atomic": True,
                "transfers": [
                    leg.model_dump(mode="json") for leg in ledger_transfers(terms, ACCOUNTS)
                ],
            }
            result = await http.post("/v1/ledger/transfers/batch", json=batch, headers=ledger)

            assert result.status_code == 200, result.text
            balances = {}
            for account_id in ("alice_usd", "alice_eur", "fx_revenue_usd", "fx_liquidity_usd"):
                account = (
                    await http.get(f"/v1/ledger/accounts/{account_id}", headers=ledger)
                ).json()
                balances[account_id] = account["credits_posted"] - account["debits_posted"]
            assert balances["alice_usd"] == 1_000_000 - terms.from_amount
            assert balances["alice_eur"] == terms.to_amount
            assert balances["fx_revenue_usd"] + balances["fx_liquidity_usd"] == terms.from_amount
            assert balances["fx_revenue_usd"] == markup_amount(terms) > 0
