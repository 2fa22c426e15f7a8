"""Payouts end to end, through the gateway with identity's tokens: a customer pays out of a
EUR wallet to an account at another bank; risk, the step-up code and review apply as for
P2P; the money is reserved on the ledger, the partner-bank simulator (served by the
platform, over real HTTP) gets a pacs.008 and answers as its script says — by the
account's last four digits: 0001 rejects AC01, 0002 rejects AC04, 0003 never answers,
0004 settles after a delay, anything else at once — and the reservation is posted or
voided. Every pacs.008 sent is validated against ISO's XSD at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.routing import Mount

from paymesh.kernel.config import Settings
from paymesh.kernel.config.banks import BANK_SIMULATOR_PATH
from paymesh.payments.service import Payments
from paymesh.providers.simulators.bank import BankSimulator
from tests.notifications.support import eventually
from tests.payments.support import RULES, Customer, PaymentsWorld, payments_world, unique
from tests.providers.test_payouts_support import (
    NEVER_ANSWERS,
    REJECTS_AC01,
    REJECTS_AC04,
    SETTLES,
    SETTLES_LATER,
    UNKNOWN_ACCOUNT,
    assert_every_message_valid,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

FEE = 50  # EUR 0.50 a payout (the tests' price list)
FUNDS = 5_000_00
STATUS_TIMEOUT_SECONDS = 3.0
SANCTIONED = "Kim Chol Sam"  # on the UN list risk's demo seed loads
PAYOUT_RULES = {
    **RULES,
    "rules": [
        *RULES["rules"],
        {
            "name": "sanctions",
            "description": "A sanctions match goes to a compliance officer",
            "condition": "sanctions_hit",
            "points": 100,
            "decision": "review",
        },
    ],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
) -> AsyncIterator[PaymentsWorld]:
    settings = Settings(
        _env_file=None,
        env="test",
        data_dir=tmp_path_factory.mktemp("payouts") / "var",
        database_url=postgres_database,
        access_log=False,
        gateway={"rate_limits": False},
        events={
            "relay_interval_seconds": 0.05,
            "outbox_retention_seconds": 3600,
            "check_payloads": True,  # events fit what /asyncapi.json documents
        },
        providers={
            "banks": [
                {
                    "status_timeout_seconds": STATUS_TIMEOUT_SECONDS,
                    "poll_interval_seconds": 2.0,
                }
            ],
            "bank_simulator": {"settle_delay_seconds": 0.5},
        },
        payments={"payout_reservation_timeout_seconds": 120},
    )
    pricing = ({"type": "payout", "currency": "EUR", "fixed": FEE},)
    async for built in payments_world(
        settings, postgres_database, pricing=pricing, rules=PAYOUT_RULES
    ):
        yield built
        await assert_every_message_valid(built.platform)


def beneficiary(iban: str = SETTLES, **fields: Any) -> dict[str, Any]:
    return {
        "name": "Erika Mustermann",
        "iban": iban,
        "bic": "COBADEFFXXX",
        "country": "DE",
        "address": ["Heidestrasse 17", "51147 Koeln"],
    } | fields


async def payer(world: PaymentsWorld) -> Customer:
    return await world.customer("EUR", funds=FUNDS)


async def pay_out(
    world: PaymentsWorld, customer: Customer, amount: int, key: str | None = None, **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = {
        "type": "payout",
        "source_wallet_id": customer.wallets["EUR"],
        "amount": amount,
        "currency": "EUR",
        "beneficiary": fields.pop("beneficiary", beneficiary()),
        **fields,
    }
    return await world.http.post(
        "/v1/payments",
        json=body,
        headers=customer.headers | {"idempotency-key": key or unique("payout-")},
    )


async def payment(world: PaymentsWorld, customer: Customer, payment_id: str) -> dict[str, Any]:
    response = await world.http.get(f"/v1/payments/{payment_id}", headers=customer.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def reaches(
    world: PaymentsWorld, customer: Customer, payment_id: str, status: str
) -> dict[str, Any]:
    async def there() -> bool:
        return (await payment(world, customer, payment_id))["status"] == status

    await eventually(there, seconds=20)
    return await payment(world, customer, payment_id)


async def balance(world: PaymentsWorld, customer: Customer) -> dict[str, int]:
    wallet = await world.http.get(
        f"/v1/wallets/{customer.wallets['EUR']}", headers=customer.headers
    )
    assert wallet.status_code == 200, wallet.text
    found: dict[str, int] = wallet.json()["balance"]
    return found


async def timeline(world: PaymentsWorld, customer: Customer, payment_id: str) -> list[str]:
    response = await world.http.get(f"/v1/payments/{payment_id}/timeline", headers=customer.headers)
    assert response.status_code == 200, response.text
    # The messages' outcomes (notification steps) come in any order, whenever sent.
    return [
        f"{step['step']}:{step['outcome']}"
        for step in response.json()["steps"]
        if step["step"] != "notification"
    ]


def simulator(world: PaymentsWorld) -> BankSimulator:
    for route in world.platform.root.routes:
        if isinstance(route, Mount) and route.path == BANK_SIMULATOR_PATH:
            found: BankSimulator = route.app.state.simulator  # type: ignore[attr-defined]
            return found
    raise AssertionError("the platform serves no bank simulator")


async def sent_to_bank(world: PaymentsWorld, payment_id: str) -> list[Any]:
    """The instructions the bank holds for the payment (none if providers made none)."""
    made = await world.http.get(f"/v1/providers/payouts/{payment_id}", headers=world.service)
    if made.status_code == 404:
        return []
    assert made.status_code == 200, made.text
    end_to_end_id = made.json()["end_to_end_id"]
    return [
        instruction
        for instruction in simulator(world).book.instructions.values()
        if instruction.transfer.end_to_end_id == end_to_end_id
    ]


async def test_a_payout_settles_and_posts_the_reservation(world: PaymentsWorld) -> None:
    customer = await payer(world)

    response = await pay_out(world, customer, 123_45, remittance_info="Invoice 2026-117")

    assert response.status_code in (201, 202), response.text
    created = response.json()
    assert created["type"] == "payout"
    assert (created["fee"], created["total"]) == (FEE, 123_45 + FEE)
    assert created["payout"]["beneficiary"]["iban"] == SETTLES
    assert created["payout"]["bank"] == "paymesh-partner-bank"
    done = await reaches(world, customer, created["id"], "succeeded")
    assert done["payout"]["outcome"]["status"] == "settled"
    assert done["payout"]["instruction"]["end_to_end_id"]
    assert await balance(world, customer) == {
        "available": FUNDS - 123_45 - FEE,
        "pending": 0,
        "posted": FUNDS - 123_45 - FEE,
    }
    steps = await timeline(world, customer, created["id"])
    for expected in ("risk:allow", "ledger:reserved", "bank:submitted", "bank:settled"):
        assert expected in steps, steps
    assert steps[-1] == "ledger:posted", steps
    # The bank saw one instruction for it, for the amount without our fee (a resend, by
    # the polling job when the first answer is slow, is the same instruction to the bank).
    sent = await sent_to_bank(world, created["id"])
    assert len(sent) == 1 and sent[0].transfer.amount_minor == 123_45
    assert sent[0].transfer.end_to_end_id == done["payout"]["instruction"]["end_to_end_id"]
    assert sent[0].transfer.remittance_info == "Invoice 2026-117"
    await world.trial_balance_holds()


@pytest.mark.parametrize(("iban", "code"), [(REJECTS_AC01, "AC01"), (REJECTS_AC04, "AC04")])
async def test_a_rejected_payout_voids_the_reservation(
    world: PaymentsWorld, iban: str, code: str
) -> None:
    customer = await payer(world)

    response = await pay_out(world, customer, 200_00, beneficiary=beneficiary(iban))

    assert response.status_code in (201, 202), response.text
    failed = await reaches(world, customer, response.json()["id"], "failed")
    assert failed["failure"]["code"] == "bank_rejected"
    assert failed["failure"]["reason"].startswith(code)
    assert failed["payout"]["outcome"]["status"] == "rejected"
    assert failed["payout"]["outcome"]["reason"].startswith(code)
    assert await balance(world, customer) == {"available": FUNDS, "pending": 0, "posted": FUNDS}
    steps = await timeline(world, customer, failed["id"])
    assert "bank:rejected" in steps and steps[-1] == "ledger:voided", steps
    await world.trial_balance_holds()


async def test_a_delayed_settlement_holds_the_money_in_transit_then_posts(
    world: PaymentsWorld,
) -> None:
    customer = await payer(world)

    response = await pay_out(world, customer, 300_00, beneficiary=beneficiary(SETTLES_LATER))

    assert response.status_code == 202, response.text
    waiting = response.json()
    assert waiting["status"] == "in_transit"
    # Reserved: no longer available, not yet posted.
    assert await balance(world, customer) == {
        "available": FUNDS - 300_00 - FEE,
        "pending": 300_00 + FEE,
        "posted": FUNDS,
    }
    await reaches(world, customer, waiting["id"], "succeeded")
    assert (await balance(world, customer))["posted"] == FUNDS - 300_00 - FEE
    # The outcome came by the bank's signed callback, not in its first answer.
    assert "bank:settled" in await timeline(world, customer, waiting["id"])
    await world.trial_balance_holds()


async def test_a_payout_the_bank_never_answers_times_out_and_is_voided(
    world: PaymentsWorld,
) -> None:
    customer = await payer(world)

    response = await pay_out(world, customer, 400_00, beneficiary=beneficiary(NEVER_ANSWERS))

    assert response.json()["status"] == "in_transit", response.text
    failed = await reaches(world, customer, response.json()["id"], "failed")
    assert failed["failure"]["code"] == "payout_timed_out"
    assert await balance(world, customer) == {"available": FUNDS, "pending": 0, "posted": FUNDS}
    await world.trial_balance_holds()


async def test_duplicate_and_out_of_order_outcomes_change_nothing(world: PaymentsWorld) -> None:
    customer = await payer(world)
    response = await pay_out(world, customer, 500_00, beneficiary=beneficiary(SETTLES_LATER))
    payment_id = response.json()["id"]
    done = await reaches(world, customer, payment_id, "succeeded")
    end_to_end_id = done["payout"]["instruction"]["end_to_end_id"]
    steps_before = await timeline(world, customer, payment_id)
    # The bank's callback again, byte for byte (a duplicate): accepted, nothing moves.
    delivery = next(
        item
        for item in simulator(world).deliveries
        if end_to_end_id.encode() in item.body and item.status == 200
    )
    replayed = await world.http.post(
        delivery.url.replace(str(world.http.base_url).rstrip("/"), ""),
        content=delivery.body,
        headers=delivery.headers,
    )
    assert replayed.status_code in (200, 202), replayed.text
    # A rejection arriving after the settlement (out of order) is ignored by payments too.
    payments: Payments = world.platform.runtimes["payments"].state["payments"]
    async with world.platform.runtimes["payments"].database.transaction() as session:
        for status in ("rejected", "settled", "timed_out"):
            assert not await payments.record_bank_outcome(
                session, payment_id, status, "AC01", "late", "event"
            )
    assert (await payment(world, customer, payment_id))["status"] == "succeeded"
    assert await timeline(world, customer, payment_id) == steps_before
    assert (await balance(world, customer))["posted"] == FUNDS - 500_00 - FEE
    await world.trial_balance_holds()


async def test_a_sanctioned_beneficiary_goes_to_review_and_nothing_is_reserved(
    world: PaymentsWorld,
) -> None:
    customer = await payer(world)

    response = await pay_out(world, customer, 100_00, beneficiary=beneficiary(name=SANCTIONED))

    assert response.status_code == 202, response.text
    held = response.json()
    assert held["status"] == "under_review"
    assert "sanctions" in [reason["rule"] for reason in held["risk"]["reasons"]]
    assert await balance(world, customer) == {"available": FUNDS, "pending": 0, "posted": FUNDS}
    assert await sent_to_bank(world, held["id"]) == []
    # The compliance officer declines: it fails, nothing was ever sent.
    cases = await world.http.get("/v1/risk/cases", headers=world.staff["compliance"])
    case = next(item for item in cases.json()["data"] if item["transaction_id"] == held["id"])
    declined = await world.http.post(
        f"/v1/risk/cases/{case['id']}/decline",
        json={"note": "true match"},
        headers=world.staff["compliance"],
    )
    assert declined.status_code == 200, declined.text
    failed = await reaches(world, customer, held["id"], "failed")
    assert failed["failure"]["code"] == "review_declined"
    assert await balance(world, customer) == {"available": FUNDS, "pending": 0, "posted": FUNDS}


async def test_a_high_amount_asks_for_the_code_then_pays_out(world: PaymentsWorld) -> None:
    customer = await payer(world)

    response = await pay_out(world, customer, 1_500_00)  # over USD 1,000: step-up

    assert response.status_code == 202, response.text
    waiting = response.json()
    assert waiting["status"] == "requires_otp"
    assert await balance(world, customer) == {"available": FUNDS, "pending": 0, "posted": FUNDS}
    code = await world.wait_for_code(customer.phone)
    confirmed = await world.http.post(
        f"/v1/payments/{waiting['id']}/otp", json={"code": code}, headers=customer.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    await reaches(world, customer, waiting["id"], "succeeded")
    assert (await balance(world, customer))["posted"] == FUNDS - 1_500_00 - FEE


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"beneficiary": beneficiary("DE47370400440532011235")}, "invalid_iban"),
        ({"beneficiary": beneficiary(bic="NOT-A-BIC")}, "invalid_bic"),
        ({"beneficiary": beneficiary(country="FR")}, "iban_country_mismatch"),
        ({"beneficiary": beneficiary(name="  ")}, "beneficiary_name_required"),
        ({"beneficiary": beneficiary(UNKNOWN_ACCOUNT)}, "beneficiary_account_not_found"),
        (
            {
                "beneficiary": {
                    "name": "Taro Yamada",
                    "account_number": "1234567",
                    "bank_code": "0001",
                    "country": "JP",
                }
            },
            "unsupported_country",
        ),
    ],
)
async def test_a_beneficiary_that_fails_validation_is_a_422_and_nothing_is_stored(
    world: PaymentsWorld, fields: dict[str, Any], code: str
) -> None:
    customer = await payer(world)

    response = await pay_out(world, customer, 10_00, **fields)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    listed = await world.http.get("/v1/payments", headers=customer.headers)
    assert listed.json()["items"] == []
    assert await balance(world, customer) == {"available": FUNDS, "pending": 0, "posted": FUNDS}


async def test_a_currency_no_partner_bank_pays_out_is_a_422(world: PaymentsWorld) -> None:
    customer = await world.customer("JPY", funds=100_000)

    response = await world.http.post(
        "/v1/payments",
        json={
            "type": "payout",
            "source_wallet_id": customer.wallets["JPY"],
            "amount": 5_000,
            "currency": "JPY",
            "beneficiary": beneficiary(),
        },
        headers=customer.headers | {"idempotency-key": unique("payout-")},
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unsupported_currency"


async def test_hostile_and_mixed_up_bodies_are_422(world: PaymentsWorld) -> None:
    customer = await payer(world)
    wallet = customer.wallets["EUR"]
    bodies = [
        {"type": "payout", "source_wallet_id": wallet, "amount": 1, "currency": "EUR"},
        {
            "type": "payout",
            "source_wallet_id": wallet,
            "amount": 1,
            "currency": "EUR",
            "beneficiary": beneficiary(),
            "destination": {"wallet_id": wallet},
        },
        {
            "type": "p2p",
            "source_wallet_id": wallet,
            "amount": 1,
            "currency": "EUR",
            "destination": {"wallet_id": wallet},
            "beneficiary": beneficiary(),
        },
        {
            "type": "payout",
            "source_wallet_id": wallet,
            "amount": 1,
            "currency": "EUR",
            "beneficiary": beneficiary(name="Erika\u0000Mustermann"),
        },
        {
            "type": "payout",
            "source_wallet_id": wallet,
            "amount": 1,
            "currency": "EUR",
            "beneficiary": beneficiary() | {"account_number": "123"},
        },
        {
            "type": "payout",
            "source_wallet_id": wallet,
            "amount": 1,
            "currency": "EUR",
            "beneficiary": beneficiary(),
            "purpose": "salary",
        },
    ]
    for body in bodies:
        response = await world.http.post(
            "/v1/payments",
            json=body,
            headers=customer.headers | {"idempotency-key": unique("payout-")},
        )
        assert 400 <= response.status_code < 500, (body, response.text)
        assert response.status_code != 404
    assert await balance(world, customer) == {"available": FUNDS, "pending": 0, "posted": FUNDS}


async def test_more_than_the_wallet_holds_fails_before_the_bank_hears_of_it(
    world: PaymentsWorld,
) -> None:
    customer = await world.customer("EUR", funds=100_00)

    response = await pay_out(world, customer, 100_00)  # the fee comes on top

    failed = response.json()
    assert failed["status"] == "failed", response.text
    assert failed["failure"]["code"] == "insufficient_funds"
    assert failed["payout"]["instruction"] is None
    assert await sent_to_bank(world, failed["id"]) == []
    assert await balance(world, customer) == {"available": 100_00, "pending": 0, "posted": 100_00}


async def test_a_payout_cannot_be_reversed_or_paid_from_another_s_wallet(
    world: PaymentsWorld,
) -> None:
    customer, thief = await payer(world), await payer(world)
    response = await pay_out(world, customer, 10_00)
    done = await reaches(world, customer, response.json()["id"], "succeeded")

    reversal = await world.http.post(
        f"/v1/payments/{done['id']}/reversals",
        json={"reason": "customer asked"},
        headers=world.staff["finance"],
    )
    stolen = await world.http.post(
        "/v1/payments",
        json={
            "type": "payout",
            "source_wallet_id": customer.wallets["EUR"],
            "amount": 10_00,
            "currency": "EUR",
            "beneficiary": beneficiary(),
        },
        headers=thief.headers | {"idempotency-key": unique("payout-")},
    )
    peek = await world.http.get(f"/v1/payments/{done['id']}", headers=thief.headers)

    assert reversal.status_code == 422 and reversal.json()["code"] == "payout_not_reversible"
    assert stolen.status_code == 404 and stolen.json()["code"] == "source_wallet_not_found"
    assert peek.status_code == 404
    assert (await balance(world, customer))["posted"] == FUNDS - 10_00 - FEE


async def test_the_same_key_answers_the_same_payout(world: PaymentsWorld) -> None:
    customer = await payer(world)

    first = await pay_out(world, customer, 20_00, key="same-payout-key")
    second = await pay_out(world, customer, 20_00, key="same-payout-key")
    changed = await pay_out(world, customer, 21_00, key="same-payout-key")

    assert first.status_code in (201, 202), first.text
    assert first.json()["id"] == second.json()["id"]
    assert changed.status_code == 422
    await reaches(world, customer, first.json()["id"], "succeeded")
    assert len(await sent_to_bank(world, first.json()["id"])) == 1
    assert (await balance(world, customer))["posted"] == FUNDS - 20_00 - FEE
