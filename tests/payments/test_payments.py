"""Payments end to end through the gateway with identity's tokens: P2P allowed at once, the
step-up code (right, wrong, another payment's, too many, resend), review approved and
declined, block, cross-currency at a forex quote (used, reused), fees, reversals, the
timeline, idempotent replays, and a wallet that can afford only some of many payments."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select, update

from paymesh.kernel.errors import RemoteServiceError
from paymesh.payments.models import Payment
from paymesh.risk.schemas import EvaluationCreate
from tests.notifications.support import eventually
from tests.payments.support import Customer, PaymentsWorld, unique

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.serial]

FEE_P2P_USD = 25  # fixed 25 + 1 % (100 bps), rounded up


def p2p_fee(amount: int) -> int:
    return FEE_P2P_USD + -(-amount // 100)


async def _payment(world: PaymentsWorld, customer: Customer, payment_id: str) -> dict[str, Any]:
    response = await world.http.get(f"/v1/payments/{payment_id}", headers=customer.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_a_low_risk_p2p_payment_moves_the_money_at_once(world_pair: Any) -> None:
    world, alice, bob = world_pair
    before_alice, before_bob = await world.balance(alice), await world.balance(bob)
    response = await world.pay(alice, bob, 12_34, description="dinner")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "succeeded"
    assert payment["fee"] == p2p_fee(12_34) and payment["total"] == 12_34 + p2p_fee(12_34)
    assert payment["risk"]["decision"] == "allow"
    assert await world.balance(alice) == before_alice - payment["total"]
    assert await world.balance(bob) == before_bob + 12_34
    await world.trial_balance_holds()
    timeline = await world.http.get(f"/v1/payments/{payment['id']}/timeline", headers=alice.headers)
    steps = [
        (step["step"], step["outcome"])
        for step in timeline.json()["steps"]
        if step["step"] != "notification"  # those come later, as the messages go out
    ]
    assert steps == [
        ("created", "ok"),
        ("risk", "allow"),
        ("ledger", "attempted"),
        ("ledger", "posted"),
    ]
    posted = [s for s in timeline.json()["steps"] if s["step"] == "ledger"][-1]["detail"][
        "transfer_ids"
    ]
    assert posted == [f"{payment['id']}_amount", f"{payment['id']}_fee"]


async def test_the_same_idempotency_key_answers_the_same_payment(world_pair: Any) -> None:
    world, alice, bob = world_pair
    key = unique("same-")
    first = await world.pay(alice, bob, 500, key=key)
    balance = await world.balance(alice)
    again = await world.pay(alice, bob, 500, key=key)
    assert again.json()["id"] == first.json()["id"]
    assert await world.balance(alice) == balance
    changed = await world.pay(alice, bob, 501, key=key)
    assert changed.status_code == 422 and changed.json()["code"] == "idempotency_key_reused"
    missing = await world.http.post(
        "/v1/payments",
        json={
            "type": "p2p",
            "source_wallet_id": alice.wallets["USD"],
            "destination": {"wallet_id": bob.wallets["USD"]},
            "amount": 1,
            "currency": "USD",
        },
        headers=alice.headers,
    )
    assert missing.status_code == 400 and missing.json()["code"] == "idempotency_key_required"


async def test_a_large_payment_needs_the_code_sent_to_the_payer(world_pair: Any) -> None:
    world, alice, bob = world_pair
    before = await world.balance(alice)
    response = await world.pay(alice, bob, 1500_00)
    assert response.status_code == 202, response.text
    payment = response.json()
    assert payment["status"] == "requires_otp" and payment["risk"]["decision"] == "step_up"
    assert await world.balance(alice) == before  # nothing moved yet
    code = await world.wait_for_code(alice.phone)
    wrong = "000000" if code != "000000" else "111111"
    refused = await world.http.post(
        f"/v1/payments/{payment['id']}/otp", json={"code": wrong}, headers=alice.headers
    )
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_code"
    assert refused.json()["attempts_left"] == 4
    # bob cannot confirm alice's payment
    foreign = await world.http.post(
        f"/v1/payments/{payment['id']}/otp", json={"code": code}, headers=bob.headers
    )
    assert foreign.status_code == 404
    confirmed = await world.http.post(
        f"/v1/payments/{payment['id']}/otp", json={"code": code}, headers=alice.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "succeeded"
    assert await world.balance(alice) == before - 1500_00 - p2p_fee(1500_00)
    replay = await world.http.post(
        f"/v1/payments/{payment['id']}/otp", json={"code": code}, headers=alice.headers
    )
    assert replay.status_code == 409
    await world.trial_balance_holds()


async def test_a_code_for_one_payment_cannot_confirm_another(world_pair: Any) -> None:
    world, alice, bob = world_pair
    first = (await world.pay(alice, bob, 1100_00)).json()
    code_first = await world.wait_for_code(alice.phone)
    messages = len(world.platform.root.state.sms_simulator.messages)
    second = (await world.pay(alice, bob, 1200_00)).json()

    async def another_code() -> bool:
        return len(world.platform.root.state.sms_simulator.messages) > messages

    await eventually(another_code)
    crossed = await world.http.post(
        f"/v1/payments/{second['id']}/otp", json={"code": code_first}, headers=alice.headers
    )
    assert crossed.status_code == 422
    assert (await _payment(world, alice, second["id"]))["status"] == "requires_otp"
    assert (await _payment(world, alice, first["id"]))["status"] == "requires_otp"


async def test_too_many_wrong_codes_fail_the_payment_and_resend_replaces_the_code(
    world_pair: Any,
) -> None:
    world, alice, bob = world_pair
    payment = (await world.pay(alice, bob, 1300_00)).json()
    old = await world.wait_for_code(alice.phone)
    resent = await world.http.post(
        f"/v1/payments/{payment['id']}/otp/resend", headers=alice.headers
    )
    assert resent.status_code == 200, resent.text
    new = await world.wait_for_code(alice.phone, count=2)
    if old != new:
        stale = await world.http.post(
            f"/v1/payments/{payment['id']}/otp", json={"code": old}, headers=alice.headers
        )
        assert stale.status_code in (409, 410, 422), stale.text
    wrong = "000000" if new != "000000" else "111111"
    last: Any = None
    for _ in range(6):
        last = await world.http.post(
            f"/v1/payments/{payment['id']}/otp", json={"code": wrong}, headers=alice.headers
        )
        if last.status_code == 200:
            break
    assert last is not None and last.json()["status"] == "failed"
    assert last.json()["failure"]["code"] == "otp_locked"


async def test_an_unanswered_code_expires_and_cancels_the_payment(
    shared_world: PaymentsWorld,
) -> None:
    world = shared_world
    alice, bob = await world.customer(funds=2000_00), await world.customer()
    before = await world.balance(alice)
    payment = (await world.pay(alice, bob, 1400_00)).json()
    runtime = world.platform.runtimes["payments"]
    async with runtime.database.transaction() as session:
        await session.execute(
            update(Payment)
            .where(Payment.id == payment["id"])
            .values(otp_expires_at=Payment.created_at)
        )
    assert await runtime.state["payments"].expire_codes() >= 1
    assert (await _payment(world, alice, payment["id"]))["status"] == "canceled"
    assert await world.balance(alice) == before


async def test_review_waits_for_compliance_then_approval_pays(world_pair: Any) -> None:
    world, alice, bob = world_pair
    before = await world.balance(bob)
    approved = (await world.pay(alice, bob, 777_00)).json()
    declined = (await world.pay(alice, bob, 777_00)).json()
    assert approved["status"] == declined["status"] == "under_review"
    cases = await world.http.get("/v1/risk/cases", headers=world.staff["compliance"])
    by_payment = {case["transaction_id"]: case["id"] for case in cases.json()["data"]}
    for payment, verb in ((approved, "approve"), (declined, "decline")):
        answered = await world.http.post(
            f"/v1/risk/cases/{by_payment[payment['id']]}/{verb}",
            json={"note": "checked"},
            headers=world.staff["compliance"],
        )
        assert answered.status_code == 200, answered.text

    async def settled() -> bool:
        first = await _payment(world, alice, approved["id"])
        second = await _payment(world, alice, declined["id"])
        return first["status"] == "succeeded" and second["status"] == "failed"

    await eventually(settled)
    assert await world.balance(bob) == before + 777_00
    failed = await _payment(world, alice, declined["id"])
    assert failed["failure"]["code"] == "review_declined"


async def test_a_blocked_payment_fails_with_the_reasons(world_pair: Any) -> None:
    world, alice, bob = world_pair
    before = await world.balance(alice)
    response = await world.pay(alice, bob, 666_00)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "failed" and payment["failure"]["code"] == "risk_blocked"
    assert [reason["rule"] for reason in payment["risk"]["reasons"]] == ["block_amount"]
    assert await world.balance(alice) == before


async def test_insufficient_funds_fail_and_move_nothing(shared_world: PaymentsWorld) -> None:
    world = shared_world
    poor, payee = await world.customer(funds=10_00), await world.customer()
    response = await world.pay(poor, payee, 20_00)
    assert response.json()["status"] == "failed"
    assert response.json()["failure"]["code"] == "insufficient_funds"
    assert await world.balance(poor) == 10_00 and await world.balance(payee) == 0


async def test_a_wallet_that_affords_some_of_many_concurrent_payments_pays_exactly_those(
    shared_world: PaymentsWorld,
) -> None:
    world = shared_world
    payer, payee = await world.customer(funds=25 * (100 + p2p_fee(100))), await world.customer()
    responses = await asyncio.gather(*(world.pay(payer, payee, 100) for _ in range(40)))
    statuses = [response.json()["status"] for response in responses]
    assert statuses.count("succeeded") == 25, statuses
    assert statuses.count("failed") == 15
    assert await world.balance(payer) == 0
    assert await world.balance(payee) == 25 * 100
    await world.trial_balance_holds()


async def test_cross_currency_at_a_quote_used_once(shared_world: PaymentsWorld) -> None:
    world = shared_world
    payer = await world.customer("USD", funds=500_00)
    payee = await world.customer("EUR")
    quote = await world.http.post(
        "/v1/forex/quotes",
        json={"from": "USD", "to": "EUR", "side": "sell", "amount": 100_00},
        headers=payer.headers,
    )
    assert quote.status_code == 201, quote.text
    terms = quote.json()
    body = {"type": "cross_currency", "quote_id": terms["id"], "to_currency": "EUR"}
    response = await world.pay(payer, payee, 100_00, **body)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "succeeded"
    assert payment["destination_amount"] == terms["to_amount"]
    assert payment["fee"] == 25  # 25 bps of 100.00, rounded up
    assert await world.balance(payee, "EUR") == terms["to_amount"]
    assert await world.balance(payer, "USD") == 500_00 - 100_00 - 25
    reused = await world.pay(payer, payee, 100_00, **body)
    assert reused.status_code == 409 and reused.json()["code"] == "quote_used"
    mismatch = await world.http.post(
        "/v1/forex/quotes",
        json={"from": "USD", "to": "EUR", "side": "sell", "amount": 50_00},
        headers=payer.headers,
    )
    wrong = await world.pay(
        payer,
        payee,
        60_00,
        type="cross_currency",
        quote_id=mismatch.json()["id"],
        to_currency="EUR",
    )
    assert wrong.status_code == 422 and wrong.json()["code"] == "quote_mismatch"
    other = await world.customer("USD", funds=100_00)
    stolen = await world.pay(
        other,
        payee,
        50_00,
        type="cross_currency",
        quote_id=mismatch.json()["id"],
        to_currency="EUR",
    )
    assert stolen.status_code == 422  # someone else's quote is as good as none
    await world.trial_balance_holds()


async def test_full_and_partial_reversals(world_pair: Any) -> None:
    world, alice, bob = world_pair
    payment = (await world.pay(alice, bob, 100_00)).json()
    fee = payment["fee"]
    before_alice, before_bob = await world.balance(alice), await world.balance(bob)
    forbidden = await world.http.post(
        f"/v1/payments/{payment['id']}/reversals", json={"reason": "x"}, headers=alice.headers
    )
    assert forbidden.status_code == 403
    part = await world.http.post(
        f"/v1/payments/{payment['id']}/reversals",
        json={"amount": 40_00, "reason": "partly returned goods"},
        headers=world.staff["finance"],
    )
    assert part.status_code == 201, part.text
    assert part.json()["fee_refund"] == fee * 40 // 100
    too_much = await world.http.post(
        f"/v1/payments/{payment['id']}/reversals",
        json={"amount": 60_01, "reason": "x"},
        headers=world.staff["finance"],
    )
    assert too_much.status_code == 409 and too_much.json()["code"] == "reversal_exceeds_payment"
    rest = await world.http.post(
        f"/v1/payments/{payment['id']}/reversals",
        json={"reason": "the rest"},
        headers=world.staff["ops"],
    )
    assert rest.status_code == 201, rest.text
    assert part.json()["fee_refund"] + rest.json()["fee_refund"] == fee
    assert (await _payment(world, alice, payment["id"]))["status"] == "reversed"
    assert await world.balance(alice) == before_alice + 100_00 + fee
    assert await world.balance(bob) == before_bob - 100_00
    again = await world.http.post(
        f"/v1/payments/{payment['id']}/reversals", json={"reason": "x"}, headers=world.staff["ops"]
    )
    assert again.status_code == 409
    await world.trial_balance_holds()


async def test_a_reversal_the_payee_cannot_cover_is_refused(shared_world: PaymentsWorld) -> None:
    world = shared_world
    payer, payee = await world.customer(funds=200_00), await world.customer()
    third = await world.customer()
    payment = (await world.pay(payer, payee, 100_00)).json()
    spent = await world.pay(payee, third, 98_00)  # + its fee: 99.23 of the 100.00
    assert spent.json()["status"] == "succeeded", spent.text
    refused = await world.http.post(
        f"/v1/payments/{payment['id']}/reversals", json={"reason": "x"}, headers=world.staff["ops"]
    )
    assert refused.status_code == 409 and refused.json()["code"] == "payee_insufficient_funds"
    after = await _payment(world, payer, payment["id"])
    assert after["status"] == "succeeded" and after["reversed_amount"] == 0


async def test_who_may_pay_from_which_wallet_and_hostile_input(world_pair: Any) -> None:
    world, alice, bob = world_pair
    stolen = await world.http.post(
        "/v1/payments",
        json={
            "type": "p2p",
            "source_wallet_id": bob.wallets["USD"],
            "destination": {"wallet_id": alice.wallets["USD"]},
            "amount": 100,
            "currency": "USD",
        },
        headers=alice.headers | {"idempotency-key": unique("k")},
    )
    assert stolen.status_code == 404 and stolen.json()["code"] == "source_wallet_not_found"
    self_pay = await world.pay(alice, alice, 100)
    assert self_pay.status_code == 422 and self_pay.json()["code"] == "self_payment"
    bodies: list[dict[str, Any]] = [
        {"amount": 0},
        {"amount": -5},
        {"amount": 2**63},
        {"currency": "usd"},
        {"currency": "EUR"},
        {"type": "wire"},
        {"destination": {}},
        {"destination": {"wallet_id": "x", "user_id": "y"}},
        {"destination": {"wallet_id": "nope"}},
        {"source_wallet_id": "../../etc"},
        {"metadata": {str(i): i for i in range(30)}},
    ]
    for change in bodies:
        body = {
            "type": "p2p",
            "source_wallet_id": alice.wallets["USD"],
            "destination": {"wallet_id": bob.wallets["USD"]},
            "amount": 100,
            "currency": "USD",
        } | change
        response = await world.http.post(
            "/v1/payments", json=body, headers=alice.headers | {"idempotency-key": unique("k")}
        )
        assert 400 <= response.status_code < 500, (change, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    for url in ("/v1/payments/nope", "/v1/payments/%00", "/v1/payments?limit=0"):
        response = await world.http.get(url, headers=alice.headers)
        assert 400 <= response.status_code < 500, url
    listing = await world.http.get("/v1/payments", headers=bob.headers)
    assert all(item["source_wallet_id"] == bob.wallets["USD"] for item in listing.json()["items"])
    anyone = await world.http.get("/v1/payments", headers=world.staff["finance"])
    assert anyone.status_code == 200 and anyone.json()["items"]
    assert (await world.http.get("/v1/payments")).status_code == 401


async def test_payments_to_a_user_and_the_notifications(shared_world: PaymentsWorld) -> None:
    world = shared_world
    payer, payee = await world.customer(funds=100_00), await world.customer()
    response = await world.pay(payer, payee, 10_00, destination={"user_id": payee.id})
    assert response.status_code == 201, response.text
    assert response.json()["destination"]["wallet_id"] == payee.wallets["USD"]

    async def told() -> bool:
        payer_side = await world.http.get("/v1/notifications", headers=payer.headers)
        payee_side = await world.http.get("/v1/notifications", headers=payee.headers)
        return "payments.payment.succeeded" in payer_side.text and (
            "payments.payment.received" in payee_side.text
        )

    await eventually(told)

    async def on_the_timeline() -> bool:
        timeline = await world.http.get(
            f"/v1/payments/{response.json()['id']}/timeline", headers=payer.headers
        )
        told_whom = {
            (step["detail"]["to"], step["outcome"])
            for step in timeline.json()["steps"]
            if step["step"] == "notification"
        }
        return {("payer", "sent"), ("payee", "sent")} <= told_whom

    await eventually(on_the_timeline)


@pytest.fixture(scope="module")
def _pair_holder() -> dict[str, Any]:
    return {}


@pytest_asyncio.fixture(loop_scope="module")
async def world_pair(
    shared_world: PaymentsWorld, _pair_holder: dict[str, Any]
) -> tuple[PaymentsWorld, Customer, Customer]:
    """alice (well funded) and bob, shared by the tests of this module."""
    if not _pair_holder:
        _pair_holder["alice"] = await shared_world.customer(funds=100_000_00)
        _pair_holder["bob"] = await shared_world.customer()
    return shared_world, _pair_holder["alice"], _pair_holder["bob"]


async def test_cross_currency_without_a_quote_asks_forex_for_one(
    shared_world: PaymentsWorld,
) -> None:
    world = shared_world
    payer = await world.customer("USD", funds=200_00)
    payee = await world.customer("EUR")
    response = await world.pay(payer, payee, 50_00, type="cross_currency", to_currency="EUR")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "succeeded" and payment["quote"]["id"].startswith("qte_")
    assert await world.balance(payee, "EUR") == payment["destination_amount"] > 0


async def test_the_source_design_s_confirm_call_pays_and_takes_the_code_second(
    shared_world: PaymentsWorld,
) -> None:
    world = shared_world
    payer, payee = await world.customer(funds=5000_00), await world.customer()
    body = {
        "transaction_id": unique("txn-"),
        "customer_id": payer.id,
        "amount": "1500.00",
        "from_account": payer.wallets["USD"],
        "to_account": payee.wallets["USD"],
    }
    key = {"idempotency-key": unique("reused-")}  # seed 3 sends the same key both times
    first = await world.http.post("/v1/payments/confirm", json=body, headers=payer.headers | key)
    assert first.status_code == 202, first.text
    assert first.json()["requires_otp"] is True
    code = await world.wait_for_code(payer.phone)
    second = await world.http.post(
        "/v1/payments/confirm", json=body | {"otp": code}, headers=payer.headers | key
    )
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "succeeded"
    assert second.json()["payment_id"] == first.json()["payment_id"]
    assert await world.balance(payee) == 1500_00
    small = body | {"transaction_id": unique("txn-"), "amount": "12.345"}
    refused = await world.http.post("/v1/payments/confirm", json=small, headers=payer.headers)
    assert refused.status_code == 422
    other = await world.customer()
    foreign = await world.http.post(
        "/v1/payments/confirm",
        json=body | {"transaction_id": unique("txn-")},
        headers=other.headers,
    )
    assert foreign.status_code == 404


async def test_a_payment_to_a_username(shared_world: PaymentsWorld) -> None:
    world = shared_world
    payer, payee = await world.customer(funds=100_00), await world.customer()
    response = await world.pay(payer, payee, 5_00, destination={"username": payee.username})
    assert response.status_code == 201, response.text
    assert response.json()["destination"]["user_id"] == payee.id
    nobody = await world.pay(payer, payee, 5_00, destination={"username": "no-such-user"})
    assert nobody.status_code == 422 and nobody.json()["code"] == "destination_invalid"
    directory = await world.http.get(
        f"/v1/identity/users/by-username/{payee.username}/contact", headers=payer.headers
    )
    assert directory.status_code == 403  # the user directory is for services only


async def test_a_reversal_the_ledger_could_not_take_is_finished_by_recovery(
    shared_world: PaymentsWorld,
) -> None:
    """The ledger down (or the process killed) after the reversal was claimed: it stays
    `pending`, and the recovery job posts it again (same transfer ids) and completes it."""
    world = shared_world
    payer, payee = await world.customer(funds=100_00), await world.customer()
    payment = (await world.pay(payer, payee, 50_00)).json()
    runtime = world.platform.runtimes["payments"]
    ledger = runtime.state["payments"].remote.ledger
    real = ledger.create_batch

    async def down(batch: Any) -> Any:
        raise RemoteServiceError(503, "service_unavailable", "the ledger is down")

    ledger.create_batch = down
    try:
        refused = await world.http.post(
            f"/v1/payments/{payment['id']}/reversals",
            json={"reason": "ledger down"},
            headers=world.staff["ops"],
        )
    finally:
        ledger.create_batch = real
    assert refused.status_code == 503, refused.text
    assert await world.balance(payee) == 50_00  # nothing moved yet
    held = await world.http.post(
        f"/v1/payments/{payment['id']}/reversals", json={"reason": "x"}, headers=world.staff["ops"]
    )
    assert held.status_code == 409  # the pending reversal holds what is left
    assert await runtime.state["reversals"].resume_pending(0) == 1
    assert (await _payment(world, payer, payment["id"]))["status"] == "reversed"
    assert await world.balance(payee) == 0
    assert await world.balance(payer) == 100_00 - 50_00 - p2p_fee(50_00) + 50_00 + p2p_fee(50_00)
    await world.trial_balance_holds()


async def test_a_payment_advanced_twice_at_once_is_decided_once(
    shared_world: PaymentsWorld,
) -> None:
    """The same payment advanced by two hands at once (the request and the recovery job,
    or a client's retry): risk answers the second `idempotency_request_in_progress` while
    the first is being decided. Payments' risk client waits for that decision (risk then
    replays it) instead of taking the 409 for a refusal and failing the payment."""
    world = shared_world
    payer = await world.customer(funds=10_00)
    risk = world.platform.runtimes["payments"].state["payments"].remote.risk
    evaluation = EvaluationCreate(
        transaction_id=unique("pay_"),
        customer_id=payer.id,
        type="p2p",
        amount=1_00,
        currency="USD",
    )
    first, second = await asyncio.gather(risk.evaluate(evaluation), risk.evaluate(evaluation))
    assert first.decision_id == second.decision_id
    assert first.decision == "allow"


async def test_risk_still_deciding_leaves_the_payment_for_recovery(
    shared_world: PaymentsWorld,
) -> None:
    """If the concurrent decision takes longer than the client waits, the payment is not
    failed: the request answers 503 `dependency_unavailable`, the payment stays `created`,
    and the recovery job finishes it."""
    world = shared_world
    payer, payee = await world.customer(funds=10_00), await world.customer()
    runtime = world.platform.runtimes["payments"]
    payments = runtime.state["payments"]
    real = payments.remote.risk

    class StillDeciding:
        async def evaluate(self, evaluation: EvaluationCreate) -> Any:
            raise RemoteServiceError(409, "idempotency_request_in_progress", "still running")

    payments.remote.risk = StillDeciding()
    try:
        refused = await world.pay(payer, payee, 2_00)
    finally:
        payments.remote.risk = real
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "dependency_unavailable"
    async with runtime.database.transaction() as session:
        statuses = (
            await session.execute(
                select(Payment.id, Payment.status).where(Payment.payer_id == payer.id)
            )
        ).all()
    assert [status for _, status in statuses] == ["created"]
    await payments.resume_stuck(0)
    assert (await _payment(world, payer, statuses[0][0]))["status"] == "succeeded"
    assert await world.balance(payee) == 2_00
