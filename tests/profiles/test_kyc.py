"""KYC end to end over real HTTP: the customer submits through the gateway; profiles hands
the submission to providers (a task); providers' connector calls the vendor simulator on
its loopback port; the simulator posts its signed decision to the platform, itself served
by uvicorn on another loopback port, through the gateway's public callback route;
providers verifies it and tells profiles with an event."""

from __future__ import annotations

import datetime as dt
from typing import Any

from paymesh.profiles.jobs import resend_unsent_submissions
from tests.profiles.fixtures import World
from tests.profiles.support import (
    Customer,
    customer,
    delivered,
    eventually,
    kyc_body,
    outbox,
    service,
)


async def kyc_of(world: World, carol: Customer) -> dict[str, Any]:
    response = await world.http.get("/v1/profiles/me", headers=carol.headers)
    assert response.status_code == 200, response.text
    kyc: dict[str, Any] = response.json()["kyc"]
    return kyc


async def decided(world: World, carol: Customer) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        kyc = await kyc_of(world, carol)
        return kyc if kyc["status"] != "pending" else None

    return await eventually(check)


async def submit(world: World, carol: Customer, number: str, **fields: Any) -> Any:
    response = await world.http.post(
        "/v1/profiles/me/kyc", json=kyc_body(number, **fields), headers=carol.headers
    )
    assert response.status_code == 202, response.text
    return response.json()


async def limits(world: World, user_id: str) -> dict[str, Any]:
    response = await world.http.get(
        f"/v1/profiles/{user_id}/limits", headers=service(world.platform, "risk")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestKycVerified:
    async def test_a_passport_is_verified_at_level_full(self, world: World) -> None:
        carol = await customer(world.platform, world.http, "carol")

        submission = await submit(world, carol, "P12345678")
        pending = await kyc_of(world, carol)
        final = await decided(world, carol)

        assert submission["status"] == "pending"
        assert submission["document_number"] == "****5678"
        assert pending["status"] == "pending"
        assert final == {
            "status": "verified",
            "level": "full",
            "reasons": [],
            "submission_id": submission["id"],
        }
        profile = (await world.http.get("/v1/profiles/me", headers=carol.headers)).json()
        assert profile["legal_name"] == "Carol Jones"
        assert profile["date_of_birth"] == "1988-02-29"
        assert (await limits(world, carol.id))["per_transaction"] == 1_000_000
        events = await outbox(world.platform, "profiles", "profiles.kyc.")
        assert [event["type"] for event in events] == [
            "profiles.kyc.submitted",
            "profiles.kyc.verified",
        ]
        assert events[1]["data"] == {
            "user_id": carol.id,
            "submission_id": submission["id"],
            "level": "full",
        }
        # No applicant data leaves in events: the document number and birth date stay put.
        for event in [*events, *await outbox(world.platform, "providers")]:
            assert "P12345678" not in str(event)
            assert "1988-02-29" not in str(event)
        # The vendor was called over HTTP and called back over HTTP, once.
        await delivered(world.simulator)
        assert [delivery.status for delivery in world.simulator.deliveries] == [200]

    async def test_a_driving_licence_grants_basic_then_a_passport_full(self, world: World) -> None:
        carol = await customer(world.platform, world.http, "carol")

        await submit(world, carol, "DL1234567", document_type="driving_licence")
        basic = await decided(world, carol)
        limits_basic = await limits(world, carol.id)
        again = await world.http.post(
            "/v1/profiles/me/kyc",
            json=kyc_body("DL7654321", document_type="driving_licence"),
            headers=carol.headers,
        )
        await submit(world, carol, "P12345678")
        full = await decided(world, carol)
        after_full = await world.http.post(
            "/v1/profiles/me/kyc", json=kyc_body("P87654321"), headers=carol.headers
        )

        assert basic["level"] == "basic"
        assert limits_basic == {
            "user_id": carol.id,
            "kyc_level": "basic",
            "currency": "USD",
            "per_transaction": 100_000,
            "daily": 300_000,
            "monthly": 1_000_000,
        }
        assert again.status_code == 409
        assert again.json()["code"] == "kyc_already_verified"
        assert full["level"] == "full"
        assert after_full.status_code == 409
        assert after_full.json()["code"] == "kyc_already_verified"


class TestKycRejected:
    async def test_0000_is_rejected_with_reasons_and_may_be_resubmitted(self, world: World) -> None:
        carol = await customer(world.platform, world.http, "carol")

        await submit(world, carol, "P12340000")
        rejected = await decided(world, carol)
        rejected_limits = await limits(world, carol.id)
        await submit(world, carol, "P12341111")
        verified = await decided(world, carol)

        assert rejected["status"] == "rejected"
        assert rejected["level"] == "none"
        assert [reason["code"] for reason in rejected["reasons"]] == ["document_expired"]
        assert rejected_limits["kyc_level"] == "none"
        assert rejected_limits["per_transaction"] == 10_000
        assert verified["status"] == "verified"
        assert verified["reasons"] == []
        types = [e["type"] for e in await outbox(world.platform, "profiles", "profiles.kyc.")]
        assert types == [
            "profiles.kyc.submitted",
            "profiles.kyc.rejected",
            "profiles.kyc.submitted",
            "profiles.kyc.verified",
        ]

    async def test_a_failed_upgrade_keeps_the_level_granted(self, world: World) -> None:
        carol = await customer(world.platform, world.http, "carol")
        await submit(world, carol, "DL1234567", document_type="driving_licence")
        await decided(world, carol)

        await submit(world, carol, "P12340000")
        kyc = await decided(world, carol)

        assert (kyc["status"], kyc["level"]) == ("rejected", "basic")


class TestKycNeedsReview:
    async def test_9999_needs_review_and_blocks_resubmission(self, world: World) -> None:
        carol = await customer(world.platform, world.http, "carol")

        await submit(world, carol, "P12349999")
        kyc = await decided(world, carol)
        again = await world.http.post(
            "/v1/profiles/me/kyc", json=kyc_body("P12341111"), headers=carol.headers
        )

        assert kyc["status"] == "needs_review"
        assert kyc["level"] == "none"
        assert [reason["code"] for reason in kyc["reasons"]] == ["manual_review_required"]
        assert again.status_code == 409
        assert again.json()["code"] == "kyc_under_review"
        types = [e["type"] for e in await outbox(world.platform, "profiles", "profiles.kyc.")]
        assert types == ["profiles.kyc.submitted", "profiles.kyc.needs_review"]


class TestKycSubmission:
    async def test_not_while_pending_and_idempotent_by_key(self, world: World) -> None:
        world.simulator.delay_seconds = 30.0  # the decision does not come during this test
        carol = await customer(world.platform, world.http, "carol")
        headers = carol.headers | {"idempotency-key": "kyc-attempt-1"}

        first = await world.http.post("/v1/profiles/me/kyc", json=kyc_body(), headers=headers)
        replay = await world.http.post("/v1/profiles/me/kyc", json=kyc_body(), headers=headers)
        second = await world.http.post(
            "/v1/profiles/me/kyc", json=kyc_body("P99998888"), headers=carol.headers
        )

        assert first.status_code == replay.status_code == 202
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()
        assert second.status_code == 409
        assert second.json()["code"] == "kyc_submission_pending"
        # The submission reached the vendor (through providers) and waits there.
        await eventually(lambda: _sent(world))

    async def test_invalid_submissions_are_422_and_change_nothing(self, world: World) -> None:
        carol = await customer(world.platform, world.http, "carol")
        before = await kyc_of(world, carol)
        for fields in (
            {"document_type": "library_card"},
            {"document_number": "AB"},
            {"document_number": "P1234/5678"},
            {"document_number": "X" * 33},
            {"document_country": "ZZ"},
            {"country": "uk"},
            {"date_of_birth": "2100-01-01"},
            {"given_name": ""},
            {"family_name": "\u200bJones\u200b"},
            {"extra": "field"},
        ):
            response = await world.http.post(
                "/v1/profiles/me/kyc", json=kyc_body(**fields), headers=carol.headers
            )
            assert response.status_code == 422, (fields, response.text)
            assert response.json()["code"] == "validation_failed"
        missing = kyc_body()
        del missing["document_number"]
        response = await world.http.post("/v1/profiles/me/kyc", json=missing, headers=carol.headers)
        assert response.status_code == 422
        assert await kyc_of(world, carol) == before
        assert await outbox(world.platform, "profiles", "profiles.kyc.") == []
        assert world.simulator.checks == {}

    async def test_the_verified_identity_is_locked(self, world: World) -> None:
        carol = await customer(world.platform, world.http, "carol")
        await submit(world, carol, "P12345678")
        await decided(world, carol)

        rename = await world.http.patch(
            "/v1/profiles/me", json={"family_name": "Smith"}, headers=carol.headers
        )
        same = await world.http.patch(
            "/v1/profiles/me",
            json={"family_name": "Jones", "country": "FR"},
            headers=carol.headers,
        )

        assert rename.status_code == 409
        assert rename.json()["code"] == "verified_identity_locked"
        assert same.status_code == 200
        assert same.json()["legal_name"] == "Carol Jones"
        assert same.json()["country"] == "FR"

    async def test_the_daily_cap(self, world: World) -> None:
        carol = await customer(world.platform, world.http, "carol")
        for _ in range(5):
            await submit(world, carol, "P12340000")
            assert (await decided(world, carol))["status"] == "rejected"

        sixth = await world.http.post(
            "/v1/profiles/me/kyc", json=kyc_body("P12345678"), headers=carol.headers
        )

        assert sixth.status_code == 429
        assert sixth.json()["code"] == "too_many_kyc_submissions"


async def _sent(world: World) -> bool:
    return len(world.simulator.checks) == 1


class TestKycUnsent:
    async def test_a_submission_whose_task_was_lost_is_sent_by_the_sweep(
        self, world: World
    ) -> None:
        # The task that sends a submission can spend its retries while the vendor is down
        # (or be lost); the customer must not stay `pending` for ever.
        runtime = world.platform.runtimes["profiles"]
        kyc = runtime.state["kyc"]
        real_enqueue = kyc.enqueue

        async def lost(*_: Any) -> str:
            return "tsk_lost"

        kyc.enqueue = lost
        carol = await customer(world.platform, world.http, "carol")
        try:
            await submit(world, carol, "P12345678")
        finally:
            kyc.enqueue = real_enqueue
        assert (await kyc_of(world, carol))["status"] == "pending"

        too_recent = await resend_unsent_submissions(runtime, older_than=dt.timedelta(hours=1))
        sent = await resend_unsent_submissions(runtime, older_than=dt.timedelta(0))
        final = await decided(world, carol)
        again = await resend_unsent_submissions(runtime, older_than=dt.timedelta(0))

        assert (too_recent, sent, again) == (0, 1, 0)
        assert final["status"] == "verified"
