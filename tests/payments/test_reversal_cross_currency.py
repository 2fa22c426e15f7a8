"""Reversals of cross-currency (USD → EUR) payments end to end through the gateway with
identity's tokens: given back at the quote's rate, pro rata, every account of the FX desk
back where it was once the whole payment is reversed; partials whose destination amounts
sum to the converted amount exactly; too much, a payee who spent the money, two operators
at once, and the ledger down until recovery posts the reversal."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from paymesh.kernel.errors import RemoteServiceError
from tests.payments.support import Customer, PaymentsWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The platform's accounts a USD → EUR payment touches (payments' default prefixes).
PLATFORM_ACCOUNTS = ("fx_liquidity_usd", "fx_liquidity_eur", "fx_revenue_usd", "payments_fees_usd")


async def _ledger_balance(world: PaymentsWorld, account_id: str) -> int:
    response = await world.http.get(f"/v1/ledger/accounts/{account_id}", headers=world.service)
    if response.status_code == 404 and response.json()["code"] == "account_not_found":
        return 0  # payments creates its accounts with the first payment that needs them
    assert response.status_code == 200, response.text
    account = response.json()
    balance: int = account["credits_posted"] - account["debits_posted"]
    return balance


async def _balances(world: PaymentsWorld, payer: Customer, payee: Customer) -> dict[str, int]:
    """Payer's USD and payee's EUR wallets, and the FX desk's and fees accounts."""
    balances = {
        "payer_usd": await world.balance(payer, "USD"),
        "payee_eur": await world.balance(payee, "EUR"),
    }
    for account_id in PLATFORM_ACCOUNTS:
        balances[account_id] = await _ledger_balance(world, account_id)
    return balances


async def _pay_usd_to_eur(
    world: PaymentsWorld, payer: Customer, payee: Customer, amount: int
) -> dict[str, Any]:
    response = await world.pay(payer, payee, amount, type="cross_currency", to_currency="EUR")
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    assert payment["status"] == "succeeded", payment
    return payment


async def _reverse(
    world: PaymentsWorld, payment_id: str, amount: int | None = None, staff: str = "ops"
) -> httpx.Response:
    body: dict[str, Any] = {"reason": "goods returned"}
    if amount is not None:
        body["amount"] = amount
    return await world.http.post(
        f"/v1/payments/{payment_id}/reversals", json=body, headers=world.staff[staff]
    )


async def _payment(world: PaymentsWorld, payer: Customer, payment_id: str) -> dict[str, Any]:
    response = await world.http.get(f"/v1/payments/{payment_id}", headers=payer.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _customers(world: PaymentsWorld, funds: int = 500_00) -> tuple[Customer, Customer]:
    return await world.customer("USD", funds=funds), await world.customer("EUR")


class TestReverseCrossCurrency:
    async def test_a_full_reversal_puts_every_account_back(
        self, shared_world: PaymentsWorld
    ) -> None:
        world = shared_world
        payer, payee = await _customers(world)
        before = await _balances(world, payer, payee)
        payment = await _pay_usd_to_eur(world, payer, payee, 100_00)
        paid = await _balances(world, payer, payee)
        assert paid["fx_revenue_usd"] > before["fx_revenue_usd"]  # the quote had a markup
        assert paid["payments_fees_usd"] == before["payments_fees_usd"] + payment["fee"] > 0

        reversal = await _reverse(world, payment["id"], staff="finance")

        assert reversal.status_code == 201, reversal.text
        assert reversal.json()["amount"] == 100_00
        assert reversal.json()["destination_amount"] == payment["destination_amount"]
        assert reversal.json()["fee_refund"] == payment["fee"]  # pro rata: all of it
        assert await _balances(world, payer, payee) == before
        after = await _payment(world, payer, payment["id"])
        assert after["status"] == "reversed" and after["reversed_amount"] == 100_00
        await world.trial_balance_holds()
        timeline = await world.http.get(
            f"/v1/payments/{payment['id']}/timeline", headers=payer.headers
        )
        [step] = [s for s in timeline.json()["steps"] if s["step"] == "reversal"]
        assert step["outcome"] == "reversed"
        assert step["detail"]["reversal_id"] == reversal.json()["id"]
        assert (step["detail"]["amount"], step["detail"]["currency"]) == (100_00, "USD")
        assert (
            step["detail"]["destination_amount"],
            step["detail"]["destination_currency"],
        ) == (payment["destination_amount"], "EUR")

    async def test_partials_take_back_exactly_the_converted_amount_in_all(
        self, shared_world: PaymentsWorld
    ) -> None:
        world = shared_world
        payer, payee = await _customers(world)
        before = await _balances(world, payer, payee)
        amount, parts = 99_97, [33_32, 33_32, 33_33]  # 9997 is prime to 3332: rounding bites
        payment = await _pay_usd_to_eur(world, payer, payee, amount)
        converted = payment["destination_amount"]
        assert converted * parts[0] % amount != 0
        taken_back = []
        for index, part in enumerate(parts):
            reversal = await _reverse(world, payment["id"], part)
            assert reversal.status_code == 201, reversal.text
            taken_back.append(reversal.json()["destination_amount"])
            await world.trial_balance_holds()
            status = (await _payment(world, payer, payment["id"]))["status"]
            assert status == ("reversed" if index == len(parts) - 1 else "partially_reversed")
        # each partial rounded down, the last takes exactly what is left
        assert taken_back[:2] == [converted * part // amount for part in parts[:2]]
        assert sum(taken_back) == converted
        assert await _balances(world, payer, payee) == before  # markup and fee exact too

    async def test_more_than_is_left_is_refused(self, shared_world: PaymentsWorld) -> None:
        world = shared_world
        payer, payee = await _customers(world)
        payment = await _pay_usd_to_eur(world, payer, payee, 50_00)
        first = await _reverse(world, payment["id"], 20_00)
        assert first.status_code == 201, first.text
        held = await world.balance(payee, "EUR")
        too_much = await _reverse(world, payment["id"], 30_01)
        assert too_much.status_code == 409, too_much.text
        assert too_much.json()["code"] == "reversal_exceeds_payment"
        assert await world.balance(payee, "EUR") == held
        rest = await _reverse(world, payment["id"])
        assert rest.status_code == 201 and rest.json()["amount"] == 30_00
        assert (
            first.json()["destination_amount"] + rest.json()["destination_amount"]
            == (payment["destination_amount"])
        )
        again = await _reverse(world, payment["id"], 1)
        assert again.status_code == 409 and again.json()["code"] == "illegal_transition"
        await world.trial_balance_holds()

    async def test_a_payee_who_spent_the_money_is_refused_and_the_claim_given_back(
        self, shared_world: PaymentsWorld
    ) -> None:
        world = shared_world
        payer, payee = await _customers(world)
        third = await world.customer("EUR")
        payment = await _pay_usd_to_eur(world, payer, payee, 100_00)
        spent = await world.pay(payee, third, payment["destination_amount"] - 1, currency="EUR")
        assert spent.json()["status"] == "succeeded", spent.text
        before = await _balances(world, payer, payee)

        refused = await _reverse(world, payment["id"])

        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "payee_insufficient_funds"
        after = await _payment(world, payer, payment["id"])
        assert after["status"] == "succeeded" and after["reversed_amount"] == 0
        assert await _balances(world, payer, payee) == before
        await world.trial_balance_holds()
        # the refused claim was given back whole: funded again, the payee returns it all
        await world.fund(payee.wallets["EUR"], payment["destination_amount"])
        reversal = await _reverse(world, payment["id"])
        assert reversal.status_code == 201, reversal.text
        assert reversal.json()["destination_amount"] == payment["destination_amount"]

    async def test_two_operators_at_once_reverse_it_once(self, shared_world: PaymentsWorld) -> None:
        world = shared_world
        payer, payee = await _customers(world)
        payment = await _pay_usd_to_eur(world, payer, payee, 80_00)
        received = await world.balance(payee, "EUR")
        answers = await asyncio.gather(
            _reverse(world, payment["id"], staff="ops"),
            _reverse(world, payment["id"], staff="finance"),
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [201, 409], [answer.text for answer in answers]
        assert await world.balance(payee, "EUR") == received - payment["destination_amount"]
        assert (await _payment(world, payer, payment["id"]))["reversed_amount"] == 80_00
        await world.trial_balance_holds()

    async def test_a_reversal_the_ledger_could_not_take_is_posted_by_recovery(
        self, shared_world: PaymentsWorld
    ) -> None:
        world = shared_world
        payer, payee = await _customers(world)
        before = await _balances(world, payer, payee)
        payment = await _pay_usd_to_eur(world, payer, payee, 60_00)
        partial = await _reverse(world, payment["id"], 10_01)
        assert partial.status_code == 201, partial.text
        runtime = world.platform.runtimes["payments"]
        ledger = runtime.state["payments"].remote.ledger
        real = ledger.create_batch

        async def down(batch: Any) -> Any:
            raise RemoteServiceError(503, "service_unavailable", "the ledger is down")

        ledger.create_batch = down
        try:
            pending = await _reverse(world, payment["id"])
        finally:
            ledger.create_batch = real
        assert pending.status_code == 503, pending.text
        await runtime.state["reversals"].resume_pending(0)  # or the recovery job got it first
        assert (await _payment(world, payer, payment["id"]))["status"] == "reversed"
        assert await _balances(world, payer, payee) == before
        await world.trial_balance_holds()
