"""Evaluations through the gateway with identity's tokens: facts gathered from profiles
(real KYC through the vendor simulator), forex and the velocity store; decisions stored
with them; who may ask; what bad input gets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from paymesh.risk.models import Decision
from tests import tokens
from tests.risk.support import RiskWorld, unique
from tests.tokens import jwt_claims

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.serial]

LISTED = {"name": "Ri Won Ho", "country": "KP"}  # UN DATAID 6908555
ORDINARY = {"name": "Maria Lopez", "country": "ES"}


def rules_of(body: dict[str, Any]) -> list[str]:
    return [reason["rule"] for reason in body["reasons"]]


class TestFactsGathered:
    async def test_an_unverified_customer_scores_40(self, shared_world: RiskWorld) -> None:
        customer_id, _ = await shared_world.customer()
        response = await shared_world.evaluate(customer_id, 1500, counterparty=ORDINARY)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["score"], body["level"], body["decision"]) == (40, "medium", "allow")
        assert rules_of(body) == ["kyc_not_verified"]
        assert body["ruleset_version"] == 1
        assert body["decision_id"].startswith("dec_")

    async def test_a_verified_customer_paying_over_5000_is_medium(
        self, shared_world: RiskWorld
    ) -> None:
        customer_id, _ = await shared_world.customer(verified=True)
        response = await shared_world.evaluate(customer_id, 500_001, counterparty=ORDINARY)
        body = response.json()
        assert (body["score"], body["level"], body["decision"]) == (30, "medium", "allow")

    async def test_the_amount_boundaries_are_strict(self, shared_world: RiskWorld) -> None:
        customer_id, _ = await shared_world.customer(verified=True)
        scores = [
            (await shared_world.evaluate(customer_id, amount)).json()["score"]
            for amount in (500_000, 500_001, 1_000_000, 1_000_001)
        ]
        assert scores == [0, 30, 30, 50]

    async def test_over_10000_steps_up(self, shared_world: RiskWorld) -> None:
        customer_id, _ = await shared_world.customer(verified=True)
        body = (await shared_world.evaluate(customer_id, 1_000_001)).json()
        assert (body["score"], body["level"], body["decision"]) == (50, "high", "step_up")

    async def test_another_currency_is_valued_in_usd_by_forex(
        self, shared_world: RiskWorld
    ) -> None:
        # Static rates: 1 EUR = 1.0842 USD and 1 EUR = 0.8526 GBP, so GBP 5,000.00 is
        # USD 6,358.198..., rounded down: over 5,000 only in USD terms.
        customer_id, _ = await shared_world.customer(verified=True)
        response = await shared_world.evaluate(customer_id, 500_000, currency="GBP")
        body = response.json()
        assert rules_of(body) == ["amount_over_5000"], body
        stored = await shared_world.http.get(
            f"/v1/risk/decisions/{body['decision_id']}", headers=shared_world.staff["ops"]
        )
        assert stored.json()["facts"]["amount_usd"] == 635_819

    async def test_the_stored_decision_has_its_inputs_and_facts(
        self, shared_world: RiskWorld
    ) -> None:
        customer_id, _ = await shared_world.customer(verified=True)
        body = (await shared_world.evaluate(customer_id, 2500, channel="mobile_app")).json()
        response = await shared_world.http.get(
            f"/v1/risk/decisions/{body['decision_id']}", headers=shared_world.service
        )
        assert response.status_code == 200
        stored = response.json()
        assert stored["request"]["channel"] == "mobile_app"
        assert stored["facts"]["kyc_status"] == "verified"
        assert stored["facts"]["kyc_level"] == "full"
        assert stored["facts"]["limit_per_transaction_usd"] == 2_000_000
        assert stored["customer_id"] == customer_id
        assert stored["screening"] == []

    async def test_an_unknown_customer_is_422(self, shared_world: RiskWorld) -> None:
        response = await shared_world.evaluate("usr_nobody", 100)
        assert response.status_code == 422
        assert response.json()["code"] == "customer_not_found"

    async def test_an_unknown_decision_is_404(self, shared_world: RiskWorld) -> None:
        response = await shared_world.http.get(
            "/v1/risk/decisions/dec_nothing", headers=shared_world.staff["ops"]
        )
        assert response.status_code == 404
        assert response.json()["code"] == "decision_not_found"


class TestVelocity:
    async def test_the_seventh_transaction_in_a_day_adds_25(self, shared_world: RiskWorld) -> None:
        customer_id, _ = await shared_world.customer(verified=True)
        answers = [(await shared_world.evaluate(customer_id, 1000)).json() for _ in range(7)]
        assert [rules_of(answer) for answer in answers[:6]] == [[]] * 6
        assert rules_of(answers[6]) == ["velocity_24h"]
        assert answers[6]["score"] == 25

    async def test_a_transaction_evaluated_again_counts_once(self, shared_world: RiskWorld) -> None:
        customer_id, _ = await shared_world.customer(verified=True)
        for _ in range(7):
            response = await shared_world.evaluate(customer_id, 1000, transaction_id="pay_same")
        assert rules_of(response.json()) == []

    async def test_another_customers_transactions_do_not_count(
        self, shared_world: RiskWorld
    ) -> None:
        busy, _ = await shared_world.customer(verified=True)
        quiet, _ = await shared_world.customer(verified=True)
        for _ in range(7):
            await shared_world.evaluate(busy, 1000)
        assert rules_of((await shared_world.evaluate(quiet, 1000)).json()) == []


class TestLimits:
    async def test_the_daily_limit_blocks_and_a_blocked_payment_uses_none(
        self, shared_world: RiskWorld
    ) -> None:
        # Level none (not verified): USD 10,000 per transaction, 20,000 a day (support.py).
        customer_id, _ = await shared_world.customer()
        first = (await shared_world.evaluate(customer_id, 1_000_000)).json()
        second = (await shared_world.evaluate(customer_id, 1_000_000)).json()
        third = (await shared_world.evaluate(customer_id, 1)).json()
        assert first["decision"] != "block" and second["decision"] != "block"
        assert third["decision"] == "block"
        assert "limit_daily" in rules_of(third)
        # The blocked one used nothing: another cent is still over, but the stored facts
        # show only the two earlier payments as used.
        stored = await shared_world.http.get(
            f"/v1/risk/decisions/{third['decision_id']}", headers=shared_world.staff["ops"]
        )
        assert stored.json()["facts"]["daily_usd"] == 2_000_000
        again = (await shared_world.evaluate(customer_id, 1)).json()
        again_stored = await shared_world.http.get(
            f"/v1/risk/decisions/{again['decision_id']}", headers=shared_world.staff["ops"]
        )
        assert again_stored.json()["facts"]["daily_usd"] == 2_000_000

    async def test_over_the_per_transaction_limit_blocks(self, shared_world: RiskWorld) -> None:
        customer_id, _ = await shared_world.customer()
        body = (await shared_world.evaluate(customer_id, 1_000_001)).json()
        assert body["decision"] == "block"
        assert "limit_per_transaction" in rules_of(body)


class TestSanctions:
    async def test_a_listed_counterparty_is_review_with_a_case(
        self, shared_world: RiskWorld
    ) -> None:
        customer_id, _ = await shared_world.customer(verified=True)
        body = (await shared_world.evaluate(customer_id, 100, counterparty=LISTED)).json()
        assert (body["decision"], body["score"]) == ("review", 100)
        stored = await shared_world.http.get(
            f"/v1/risk/decisions/{body['decision_id']}", headers=shared_world.staff["compliance"]
        )
        match = stored.json()["screening"][0]
        assert (match["list"], match["entry_id"]) == ("UN", "6908555")
        opened = [
            case
            for case in await shared_world.events("risk.case.opened")
            if case["decision_id"] == body["decision_id"]
        ]
        assert len(opened) == 1

    async def test_a_listed_customer_is_review(self, shared_world: RiskWorld) -> None:
        # The customer's own legal name (from KYC) is screened too.
        customer_id, _ = await shared_world.customer(
            verified=True, given_name="Won Ho", family_name="Ri", country="KP"
        )
        body = (await shared_world.evaluate(customer_id, 100, counterparty=ORDINARY)).json()
        assert body["decision"] == "review"


class TestWhoMayAsk:
    async def test_a_customer_cannot_evaluate(self, shared_world: RiskWorld) -> None:
        customer_id, headers = await shared_world.customer()
        response = await shared_world.evaluate(customer_id, 100, headers=headers)
        assert response.status_code == 403

    async def test_no_token_is_401_at_the_gateway(self, shared_world: RiskWorld) -> None:
        response = await shared_world.http.post("/v1/risk/evaluate", json={})
        assert response.status_code == 401

    async def test_a_customer_cannot_read_decisions(self, shared_world: RiskWorld) -> None:
        customer_id, headers = await shared_world.customer()
        body = (await shared_world.evaluate(customer_id, 100)).json()
        response = await shared_world.http.get(
            f"/v1/risk/decisions/{body['decision_id']}", headers=headers
        )
        assert response.status_code == 403


async def keyed_request(world: RiskWorld) -> tuple[str, dict[str, str], str]:
    """A new customer, an Idempotency-Key header and a transaction id."""
    customer_id, _ = await world.customer()
    return customer_id, {"idempotency-key": unique("k")}, unique("pay_")


async def decisions_of(world: RiskWorld, transaction_id: str) -> list[str]:
    runtime = world.platform.runtimes["risk"]
    async with runtime.database.transaction() as session:
        found = await session.execute(
            select(Decision.id).where(Decision.transaction_id == transaction_id)
        )
        return list(found.scalars())


def grouped_works() -> float:
    """Works the decisions' group commit has committed so far (the fast path's writer)."""
    value = REGISTRY.get_sample_value("paymesh_group_commit_works_sum", {"group": "risk-decisions"})
    return value or 0.0


class TestIdempotencyKeyOnTheFastPath:
    """Payments sends every evaluation with an Idempotency-Key; the plain handler serves
    those too, its decision and stored answer committed together in the shared
    transaction. The key's contract is the kernel's, checked here as an attacker or a
    confused client would lean on it."""

    async def test_a_retry_with_the_key_gets_the_same_decision(
        self, shared_world: RiskWorld
    ) -> None:
        customer_id, key, transaction = await keyed_request(shared_world)
        first = await shared_world.evaluate(
            customer_id, 100, transaction_id=transaction, headers=key
        )
        second = await shared_world.evaluate(
            customer_id, 100, transaction_id=transaction, headers=key
        )
        assert second.headers.get("idempotent-replayed") == "true"
        assert second.json() == first.json()

    async def test_a_keyed_evaluation_is_decided_in_the_shared_transaction(
        self, shared_world: RiskWorld
    ) -> None:
        customer_id, _ = await shared_world.customer()
        before = grouped_works()
        first = await shared_world.evaluate(
            customer_id, 100, headers={"idempotency-key": unique("k")}
        )
        assert first.status_code == 200, first.text
        assert first.headers["content-type"] == "application/json"
        assert "idempotent-replayed" not in first.headers
        assert grouped_works() == before + 1

    async def test_the_same_key_for_another_body_is_refused_and_decides_nothing(
        self, shared_world: RiskWorld
    ) -> None:
        customer_id, key, transaction = await keyed_request(shared_world)
        first = await shared_world.evaluate(
            customer_id, 100, transaction_id=transaction, headers=key
        )
        assert first.status_code == 200, first.text
        changed = unique("pay_")
        reused = await shared_world.evaluate(customer_id, 100, transaction_id=changed, headers=key)
        assert reused.status_code == 422, reused.text
        assert reused.json()["code"] == "idempotency_key_reused"
        assert await decisions_of(shared_world, changed) == []
        bigger = await shared_world.evaluate(
            customer_id, 200, transaction_id=transaction, headers=key
        )
        assert bigger.json()["code"] == "idempotency_key_reused"
        assert await decisions_of(shared_world, transaction) == [first.json()["decision_id"]]

    async def test_a_key_is_the_callers_own(self, shared_world: RiskWorld) -> None:
        # Another service client using the same key and body gets a decision of its own,
        # never the first caller's stored answer.
        customer_id, _ = await shared_world.customer()
        other = await tokens.service_token(shared_world.platform, shared_world.http)
        key = {"idempotency-key": unique("k")}
        transaction = unique("pay_")
        first = await shared_world.evaluate(
            customer_id, 100, transaction_id=transaction, headers=key
        )
        second = await shared_world.evaluate(
            customer_id, 100, transaction_id=transaction, headers=other | key
        )
        assert first.status_code == second.status_code == 200, second.text
        assert "idempotent-replayed" not in second.headers
        assert first.json()["decision_id"] != second.json()["decision_id"]

    async def test_a_refusal_is_stored_and_replayed(self, shared_world: RiskWorld) -> None:
        key = {"idempotency-key": unique("k")}
        transaction = unique("pay_")
        answers = [
            await shared_world.evaluate("usr_nobody", 100, transaction_id=transaction, headers=key)
            for _ in range(2)
        ]
        assert [answer.status_code for answer in answers] == [422, 422]
        assert answers[0].json()["code"] == "customer_not_found"
        assert answers[0].headers["content-type"].startswith("application/problem+json")
        assert "idempotent-replayed" not in answers[0].headers
        assert answers[1].headers["idempotent-replayed"] == "true"
        assert answers[1].json() == answers[0].json()
        assert await decisions_of(shared_world, transaction) == []

    @pytest.mark.parametrize("key", [b"has space", b"x" * 256, "café".encode(), b""])
    async def test_a_malformed_key_is_400_and_decides_nothing(
        self, shared_world: RiskWorld, key: bytes
    ) -> None:
        customer_id, _ = await shared_world.customer()
        transaction = unique("pay_")
        response = await shared_world.http.post(
            "/v1/risk/evaluate",
            content=json.dumps(
                {
                    "transaction_id": transaction,
                    "customer_id": customer_id,
                    "type": "p2p",
                    "amount": 100,
                    "currency": "USD",
                }
            ),
            headers=shared_world.service
            | {"content-type": "application/json", "idempotency-key": key},
        )
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_idempotency_key"
        assert await decisions_of(shared_world, transaction) == []

    async def test_an_invalid_body_stores_nothing_under_the_key(
        self, shared_world: RiskWorld
    ) -> None:
        customer_id, key, transaction = await keyed_request(shared_world)
        bad = await shared_world.evaluate(customer_id, -5, transaction_id=transaction, headers=key)
        assert bad.status_code == 422
        assert bad.json()["code"] == "validation_failed"
        # The key was not spent on a request that never ran: the corrected one runs.
        good = await shared_world.evaluate(customer_id, 5, transaction_id=transaction, headers=key)
        assert good.status_code == 200, good.text
        assert "idempotent-replayed" not in good.headers
        assert await decisions_of(shared_world, transaction) == [good.json()["decision_id"]]

    async def test_concurrent_requests_with_one_key_decide_once(
        self, shared_world: RiskWorld
    ) -> None:
        customer_id, key, transaction = await keyed_request(shared_world)
        answers = await asyncio.gather(
            *(
                shared_world.evaluate(customer_id, 100, transaction_id=transaction, headers=key)
                for _ in range(8)
            )
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert set(statuses) <= {200, 409}, [answer.text for answer in answers]
        stored = await decisions_of(shared_world, transaction)
        assert len(stored) == 1
        assert {
            answer.json()["decision_id"] for answer in answers if answer.status_code == 200
        } == set(stored)
        conflicts = [answer for answer in answers if answer.status_code == 409]
        assert all(
            answer.json()["code"] == "idempotency_request_in_progress" for answer in conflicts
        )
        again = await shared_world.evaluate(
            customer_id, 100, transaction_id=transaction, headers=key
        )
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["decision_id"] == stored[0]


class TestFastPath:
    """`POST /v1/risk/evaluate` is served by a plain handler (risk/fastpath.py), with an
    Idempotency-Key through the kernel's key contract; the FastAPI route stays for other
    bodies. A keyed request and a plain one must answer alike."""

    async def test_both_paths_give_the_same_decision_document(
        self, shared_world: RiskWorld
    ) -> None:
        customer_id, _ = await shared_world.customer(verified=True)
        plain = await shared_world.evaluate(customer_id, 600_000, counterparty=ORDINARY)
        keyed = await shared_world.evaluate(
            customer_id, 600_000, counterparty=ORDINARY, headers={"idempotency-key": unique("k")}
        )
        assert plain.status_code == keyed.status_code == 200
        assert plain.headers["content-type"] == keyed.headers["content-type"]
        first, second = plain.json(), keyed.json()
        assert first.keys() == second.keys()
        assert first["decision_id"] != second["decision_id"]
        for same in ("score", "level", "decision", "reasons", "ruleset_version"):
            assert first[same] == second[same], same

    async def test_both_paths_refuse_alike(self, shared_world: RiskWorld) -> None:
        customer_id, headers = await shared_world.customer()
        body = {"transaction_id": unique("pay_"), "customer_id": customer_id, "type": "p2p"}
        answers = [
            await shared_world.http.post(
                "/v1/risk/evaluate", json=body, headers=shared_world.service | extra
            )
            for extra in ({}, {"idempotency-key": unique("k")})
        ]
        assert [answer.status_code for answer in answers] == [422, 422]
        assert answers[0].json()["errors"] == answers[1].json()["errors"]
        assert answers[0].json()["code"] == answers[1].json()["code"]
        # A customer's token: 403 on both, the body never read.
        refused = [
            await shared_world.http.post("/v1/risk/evaluate", json=body, headers=headers | extra)
            for extra in ({}, {"idempotency-key": unique("k")})
        ]
        assert [answer.status_code for answer in refused] == [403, 403]
        assert refused[0].json()["code"] == refused[1].json()["code"] == "forbidden"

    async def test_a_disabled_clients_token_is_refused_on_both_paths(
        self, shared_world: RiskWorld
    ) -> None:
        # A stolen service token is cut off by disabling its client: the token is still
        # unexpired and correctly signed, and must stop working at once on the fast path
        # as on the declared route, storing nothing.
        service = await tokens.service_token(shared_world.platform, shared_world.http)
        claims = jwt_claims(service["authorization"].removeprefix("Bearer "))
        customer_id, _ = await shared_world.customer()
        allowed = await shared_world.evaluate(customer_id, 100, headers=service)
        assert allowed.status_code == 200, allowed.text

        # Identity's admin API wants a delegated token to carry scope identity:admin too.
        admin = shared_world.platform.tokens.issue("usr_risk_admin", roles=["admin"])
        disabled = await shared_world.http.post(
            f"/v1/identity/clients/{claims['client_id']}/disable",
            headers={"authorization": f"Bearer {admin}"},
        )
        assert disabled.status_code == 200, disabled.text
        transactions = [unique("pay_"), unique("pay_")]
        refused = [
            await shared_world.evaluate(
                customer_id, 100, transaction_id=transaction, headers=service | extra
            )
            for transaction, extra in zip(
                transactions, ({}, {"idempotency-key": unique("k")}), strict=True
            )
        ]
        assert [answer.status_code for answer in refused] == [401, 401]
        assert all(
            answer.headers["content-type"].startswith("application/problem+json")
            for answer in refused
        )
        runtime = shared_world.platform.runtimes["risk"]
        async with runtime.database.transaction() as session:
            stored = await session.execute(
                select(Decision.id).where(Decision.transaction_id.in_(transactions))
            )
            assert stored.first() is None

    async def test_a_refused_evaluation_stores_nothing(self, shared_world: RiskWorld) -> None:
        transaction = unique("pay_")
        response = await shared_world.evaluate("usr_nobody", 100, transaction_id=transaction)
        assert response.status_code == 422
        runtime = shared_world.platform.runtimes["risk"]
        async with runtime.database.transaction() as session:
            stored = await session.execute(
                select(Decision.id).where(Decision.transaction_id == transaction)
            )
            assert stored.first() is None


class TestHostileInput:
    @pytest.mark.parametrize(
        "change",
        [
            {"amount": 10.5},
            {"amount": -1},
            {"amount": 0},
            {"amount": 2**64},
            {"amount": "100"},
            {"currency": "XXZ"},
            {"type": "loan"},
            {"customer_id": "a" * 65},
            {"transaction_id": "bad id"},
            {"counterparty": {"name": "nul\u0000byte"}},
            {"counterparty": {"name": ""}},
            {"counterparty": {"name": "x" * 201}},
            {"counterparty": {"name": "Bob", "country": "gbr"}},
            {"metadata": {f"k{i}": "v" for i in range(21)}},
            {"unexpected": True},
        ],
    )
    async def test_bad_input_is_refused(
        self, shared_world: RiskWorld, change: dict[str, Any]
    ) -> None:
        customer_id, _ = await shared_world.customer()
        body = {
            "transaction_id": unique("pay_"),
            "customer_id": customer_id,
            "type": "p2p",
            "amount": 100,
            "currency": "USD",
            **change,
        }
        response = await shared_world.http.post(
            "/v1/risk/evaluate", json=body, headers=shared_world.service
        )
        # NUL is refused by the decoding layer before validation (400), the rest by it.
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"].startswith("application/problem+json")

    async def test_a_body_that_is_not_json_is_400(self, shared_world: RiskWorld) -> None:
        response = await shared_world.http.post(
            "/v1/risk/evaluate",
            content=b'{"amount": 1, "amount": 2}',
            headers=shared_world.service | {"content-type": "application/json"},
        )
        assert 400 <= response.status_code < 500


class TestConcurrentPayments:
    async def test_payments_sent_at_once_cannot_all_fit_under_the_daily_limit(
        self, shared_world: RiskWorld
    ) -> None:
        # Level none: USD 10,000 per transaction and 20,000 a day: two of five fit.
        customer_id, _ = await shared_world.customer()
        answers = await asyncio.gather(
            *(shared_world.evaluate(customer_id, 1_000_000) for _ in range(5))
        )
        decisions = sorted(answer.json()["decision"] for answer in answers)
        assert decisions.count("block") == 3, decisions
