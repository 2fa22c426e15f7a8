"""What operators do with risk, through the gateway with their identity tokens: simulate,
write and activate rule sets, roll back, backtest, work the review queue, screen names.
Each test activates the versions it needs, so the order of tests does not matter."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from paymesh.kernel.db import utcnow
from paymesh.risk.models import RuleSetActivation
from paymesh.risk.rulesets import ACTIVE_SECONDS
from tests.risk.support import RiskWorld, unique

pytestmark = pytest.mark.asyncio(loop_scope="module")

LISTED = {"name": "Ri Won Ho", "country": "KP"}


def transaction(customer_id: str = "usr_sim", amount: int = 100) -> dict[str, Any]:
    return {
        "transaction_id": unique("pay_"),
        "customer_id": customer_id,
        "type": "payout",
        "amount": amount,
        "currency": "USD",
    }


def strict_rules(points: int = 60) -> dict[str, Any]:
    """A candidate: any amount over USD 100 is high."""
    return {
        "description": "Stricter: over USD 100 is high",
        "rules": [
            {
                "name": "amount_over_100",
                "description": "Amount above USD 100",
                "condition": "amount_usd > 10000",
                "points": points,
            }
        ],
    }


async def create(world: RiskWorld, definition: dict[str, Any]) -> int:
    response = await world.http.post(
        "/v1/risk/rulesets", json=definition, headers=world.staff["admin"]
    )
    assert response.status_code == 201, response.text
    version: int = response.json()["version"]
    return version


async def activate(world: RiskWorld, version: int) -> Any:
    return await world.http.post(
        f"/v1/risk/rulesets/{version}/activate", headers=world.staff["admin"]
    )


class TestSimulate:
    async def test_the_callers_facts_decide_and_nothing_is_stored(
        self, shared_world: RiskWorld
    ) -> None:
        await activate(shared_world, 1)
        body = {
            "transaction": transaction(),
            "facts": {
                "kyc_status": "verified",
                "transactions_24h": 6,
                "amount_usd": 1_000_001,
                "sanctions_hit": False,
            },
        }
        response = await shared_world.http.post(
            "/v1/risk/simulate", json=body, headers=shared_world.staff["ops"]
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["decision_id"] is None
        assert (answer["score"], answer["level"], answer["decision"]) == (75, "high", "step_up")
        runtime = shared_world.platform.runtimes["risk"]
        async with runtime.database.transaction() as session:
            from paymesh.risk.models import Activity, Decision

            stored = await session.get(Activity, ("usr_sim", body["transaction"]["transaction_id"]))
            decisions = (await session.execute(Decision.__table__.select())).all()
        assert stored is None
        assert all(row.customer_id != "usr_sim" for row in decisions)

    async def test_a_stored_version_can_be_tried(self, shared_world: RiskWorld) -> None:
        version = await create(shared_world, strict_rules())
        body = {
            "transaction": transaction(),
            "facts": {"amount_usd": 20_000},
            "ruleset_version": version,
        }
        response = await shared_world.http.post(
            "/v1/risk/simulate", json=body, headers=shared_world.staff["admin"]
        )
        assert response.json()["ruleset_version"] == version
        assert response.json()["decision"] == "step_up"

    @pytest.mark.parametrize("role", ["compliance", "finance"])
    async def test_only_ops_and_admin_simulate(self, shared_world: RiskWorld, role: str) -> None:
        body = {"transaction": transaction(), "facts": {"amount_usd": 1}}
        response = await shared_world.http.post(
            "/v1/risk/simulate", json=body, headers=shared_world.staff[role]
        )
        assert response.status_code == 403

    async def test_a_service_cannot_simulate(self, shared_world: RiskWorld) -> None:
        body = {"transaction": transaction(), "facts": {"amount_usd": 1}}
        response = await shared_world.http.post(
            "/v1/risk/simulate", json=body, headers=shared_world.service
        )
        assert response.status_code == 403

    async def test_unknown_facts_are_422(self, shared_world: RiskWorld) -> None:
        body = {"transaction": transaction(), "facts": {"amount_usd": 1, "balance": 5}}
        response = await shared_world.http.post(
            "/v1/risk/simulate", json=body, headers=shared_world.staff["ops"]
        )
        assert response.status_code == 422


class TestRuleSets:
    async def test_an_activated_version_decides_the_next_evaluation(
        self, shared_world: RiskWorld
    ) -> None:
        version = await create(shared_world, strict_rules())
        activated = await activate(shared_world, version)
        assert activated.status_code == 200, activated.text
        try:
            customer_id, _ = await shared_world.customer()
            body = (await shared_world.evaluate(customer_id, 20_000)).json()
            assert body["ruleset_version"] == version
            assert [reason["rule"] for reason in body["reasons"]] == ["amount_over_100"]
            assert body["decision"] == "step_up"
        finally:
            await activate(shared_world, 1)
        events = await shared_world.events("risk.ruleset.activated")
        assert {"version": version, "reason": "activate"}.items() <= events[-2].items()

    async def test_rollback_returns_to_the_previous_version(self, shared_world: RiskWorld) -> None:
        first = await create(shared_world, strict_rules(10))
        second = await create(shared_world, strict_rules(20))
        await activate(shared_world, first)
        await activate(shared_world, second)
        response = await shared_world.http.post(
            "/v1/risk/rulesets/rollback", headers=shared_world.staff["admin"]
        )
        assert response.status_code == 200, response.text
        assert (response.json()["version"], response.json()["reason"]) == (first, "rollback")
        listing = await shared_world.http.get(
            "/v1/risk/rulesets", headers=shared_world.staff["compliance"]
        )
        active = [ruleset["version"] for ruleset in listing.json() if ruleset["active"]]
        assert active == [first]
        # Again: further back (to what preceded `first`), never back and forth.
        before_first = await shared_world.http.post(
            "/v1/risk/rulesets/rollback", headers=shared_world.staff["admin"]
        )
        assert before_first.status_code == 200, before_first.text
        assert before_first.json()["version"] not in (first, second)
        await activate(shared_world, 1)

    async def test_a_rollback_decides_the_next_evaluation(self, shared_world: RiskWorld) -> None:
        # The active set is held between evaluations: this process's own change must
        # still apply to the very next one.
        await activate(shared_world, 1)
        version = await create(shared_world, strict_rules())
        await activate(shared_world, version)
        customer_id, _ = await shared_world.customer()
        assert (await shared_world.evaluate(customer_id, 20_000)).json()["ruleset_version"] == (
            version
        )
        rolled = await shared_world.http.post(
            "/v1/risk/rulesets/rollback", headers=shared_world.staff["admin"]
        )
        assert rolled.json()["version"] == 1, rolled.text
        assert (await shared_world.evaluate(customer_id, 20_000)).json()["ruleset_version"] == 1

    async def test_another_processs_activation_applies_within_a_second(
        self, shared_world: RiskWorld
    ) -> None:
        await activate(shared_world, 1)
        version = await create(shared_world, strict_rules())
        customer_id, _ = await shared_world.customer()
        assert (await shared_world.evaluate(customer_id, 100)).json()["ruleset_version"] == 1
        # As another replica activates: a row committed on the database, no local mark.
        async with shared_world.platform.runtimes["risk"].database.transaction() as session:
            session.add(
                RuleSetActivation(
                    version=version,
                    previous_version=1,
                    activated_at=utcnow(),
                    activated_by="another_replica",
                    reason="activate",
                )
            )
        committed = time.monotonic()
        try:
            while True:
                body = (await shared_world.evaluate(customer_id, 20_000)).json()
                if body["ruleset_version"] == version:
                    break
                assert body["ruleset_version"] == 1
                assert time.monotonic() - committed < ACTIVE_SECONDS + 0.5
                await asyncio.sleep(0.05)
        finally:
            await activate(shared_world, 1)
        assert time.monotonic() - committed < ACTIVE_SECONDS + 1.0

    async def test_activating_the_active_version_is_409(self, shared_world: RiskWorld) -> None:
        await activate(shared_world, 1)
        response = await activate(shared_world, 1)
        assert response.status_code == 409
        assert response.json()["code"] == "ruleset_already_active"

    async def test_an_unknown_version_is_404(self, shared_world: RiskWorld) -> None:
        response = await activate(shared_world, 999_999)
        assert response.status_code == 404

    @pytest.mark.parametrize(
        "condition", ["amount_usd >", "balance > 1", "amount_usd", 'size(kyc_status) + "x"']
    )
    async def test_a_rule_that_cannot_run_is_refused(
        self, shared_world: RiskWorld, condition: str
    ) -> None:
        definition = strict_rules()
        definition["rules"][0]["condition"] = condition
        response = await shared_world.http.post(
            "/v1/risk/rulesets", json=definition, headers=shared_world.staff["admin"]
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_ruleset"

    @pytest.mark.parametrize("role", ["ops", "compliance"])
    async def test_only_admin_writes_rule_sets(self, shared_world: RiskWorld, role: str) -> None:
        response = await shared_world.http.post(
            "/v1/risk/rulesets", json=strict_rules(), headers=shared_world.staff[role]
        )
        assert response.status_code == 403
        response = await activate_as(shared_world, 1, role)
        assert response.status_code == 403

    async def test_a_customer_cannot_read_rules(self, shared_world: RiskWorld) -> None:
        _, headers = await shared_world.customer()
        response = await shared_world.http.get("/v1/risk/rulesets", headers=headers)
        assert response.status_code == 403

    async def test_a_backtest_reports_the_decisions_that_would_change(
        self, shared_world: RiskWorld
    ) -> None:
        await activate(shared_world, 1)
        customer_id, _ = await shared_world.customer(verified=True)
        small = (await shared_world.evaluate(customer_id, 5_000)).json()  # allow
        large = (await shared_world.evaluate(customer_id, 20_000)).json()  # allow
        version = await create(shared_world, strict_rules())
        response = await shared_world.http.post(
            f"/v1/risk/rulesets/{version}/backtest",
            json={"limit": 10_000},
            headers=shared_world.staff["ops"],
        )
        assert response.status_code == 200, response.text
        report = response.json()
        changed = {change["decision_id"]: change for change in report["changes"]}
        assert large["decision_id"] in changed
        assert small["decision_id"] not in changed
        assert changed[large["decision_id"]]["before"]["decision"] == "allow"
        assert changed[large["decision_id"]]["after"] == {
            "decision": "step_up",
            "level": "high",
            "score": 60,
        }
        assert report["replayed"] >= 2
        assert report["changed"] >= 1


async def activate_as(world: RiskWorld, version: int, role: str) -> Any:
    return await world.http.post(f"/v1/risk/rulesets/{version}/activate", headers=world.staff[role])


class TestReviewQueue:
    async def review(self, world: RiskWorld) -> dict[str, Any]:
        await activate(world, 1)
        customer_id, _ = await world.customer(verified=True)
        decision = (await world.evaluate(customer_id, 100, counterparty=LISTED)).json()
        assert decision["decision"] == "review"
        cases = await world.http.get(
            "/v1/risk/cases", params={"status": "open", "limit": 100}, headers=world.staff["ops"]
        )
        found = [
            case for case in cases.json()["data"] if case["decision_id"] == decision["decision_id"]
        ]
        assert len(found) == 1
        case: dict[str, Any] = found[0]
        return case

    async def test_compliance_approves_once(self, shared_world: RiskWorld) -> None:
        case = await self.review(shared_world)
        url = f"/v1/risk/cases/{case['id']}/approve"
        approved = await shared_world.http.post(
            url,
            json={"note": "false positive: different person"},
            headers=shared_world.staff["compliance"],
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "approved"
        assert approved.json()["note"] == "false positive: different person"
        again = await shared_world.http.post(url, headers=shared_world.staff["compliance"])
        assert again.status_code == 409
        assert again.json()["code"] == "case_already_resolved"
        events = await shared_world.events("risk.case.approved")
        assert any(event["case_id"] == case["id"] for event in events)

    async def test_declining_frees_the_limit_it_held(self, shared_world: RiskWorld) -> None:
        case = await self.review(shared_world)
        declined = await shared_world.http.post(
            f"/v1/risk/cases/{case['id']}/decline", headers=shared_world.staff["ops"]
        )
        assert declined.json()["status"] == "declined"
        next_one = (await shared_world.evaluate(case["customer_id"], 100)).json()
        stored = await shared_world.http.get(
            f"/v1/risk/decisions/{next_one['decision_id']}", headers=shared_world.staff["ops"]
        )
        assert stored.json()["facts"]["daily_usd"] == 0
        events = await shared_world.events("risk.case.declined")
        assert any(event["case_id"] == case["id"] for event in events)

    @pytest.mark.parametrize("role", ["admin", "finance"])
    async def test_others_cannot_resolve(self, shared_world: RiskWorld, role: str) -> None:
        case = await self.review(shared_world)
        response = await shared_world.http.post(
            f"/v1/risk/cases/{case['id']}/approve", headers=shared_world.staff[role]
        )
        assert response.status_code == 403

    async def test_a_customer_cannot_approve_their_own_case(self, shared_world: RiskWorld) -> None:
        case = await self.review(shared_world)
        _, headers = await shared_world.customer()
        response = await shared_world.http.post(
            f"/v1/risk/cases/{case['id']}/approve", headers=headers
        )
        assert response.status_code == 403

    async def test_an_unknown_case_is_404_and_a_bad_cursor_422(
        self, shared_world: RiskWorld
    ) -> None:
        response = await shared_world.http.post(
            "/v1/risk/cases/case_nothing/approve", headers=shared_world.staff["ops"]
        )
        assert response.status_code == 404
        response = await shared_world.http.get(
            "/v1/risk/cases", params={"cursor": "not-a-cursor"}, headers=shared_world.staff["ops"]
        )
        assert response.status_code == 422


class TestScreenings:
    async def test_a_listed_name_with_a_typo_hits(self, shared_world: RiskWorld) -> None:
        response = await shared_world.http.post(
            "/v1/risk/screenings",
            json={"name": "Won Ho Rii", "country": "KP"},
            headers=shared_world.staff["compliance"],
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["hit"] is True
        assert body["matches"][0]["entry_id"] == "6908555"
        assert body["matches"][0]["reasons"]
        assert body["lists"][0]["list_name"] == "UN"

    async def test_an_ordinary_name_does_not(self, shared_world: RiskWorld) -> None:
        response = await shared_world.http.post(
            "/v1/risk/screenings", json={"name": "Maria Lopez"}, headers=shared_world.service
        )
        assert response.json() == {
            "hit": False,
            "matches": [],
            "threshold": 85.0,
            "lists": response.json()["lists"],
        }

    async def test_a_customer_cannot_screen(self, shared_world: RiskWorld) -> None:
        _, headers = await shared_world.customer()
        response = await shared_world.http.post(
            "/v1/risk/screenings", json={"name": "Maria Lopez"}, headers=headers
        )
        assert response.status_code == 403

    @pytest.mark.parametrize(
        "body",
        [{"name": ""}, {"name": "x" * 201}, {"name": "a", "country": "zz1"}, {"nom": "a"}],
    )
    async def test_bad_input_is_422(self, shared_world: RiskWorld, body: dict[str, Any]) -> None:
        response = await shared_world.http.post(
            "/v1/risk/screenings", json=body, headers=shared_world.service
        )
        assert response.status_code == 422

    async def test_the_loaded_lists_are_listed(self, shared_world: RiskWorld) -> None:
        response = await shared_world.http.get(
            "/v1/risk/sanctions-lists", headers=shared_world.staff["ops"]
        )
        assert response.status_code == 200
        assert response.json()[0]["entry_count"] == 1018


class TestEventsNameTheActor:
    async def test_an_activation_event_carries_who_and_which_request(
        self, shared_world: RiskWorld
    ) -> None:
        version = await create(shared_world, strict_rules(5))
        response = await activate(shared_world, version)
        await activate(shared_world, 1)
        runtime = shared_world.platform.runtimes["risk"]
        table = runtime.spec.tables.outbox
        async with runtime.database.transaction() as session:
            rows = await session.execute(
                table.select().where(table.c.type == "risk.ruleset.activated")
            )
            envelopes = [row.envelope for row in rows]
        mine = [e for e in envelopes if e["data"]["version"] == version]
        assert len(mine) == 1
        assert mine[0]["requestid"] == response.headers["x-request-id"]
        assert "admin" in mine[0]["actorroles"].split()
        assert mine[0]["actor"] == mine[0]["data"]["by"]
