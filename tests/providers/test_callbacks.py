"""The KYC vendor's callbacks at the gateway's public route, over real HTTP: only an
authentic, fresh, first-seen callback for a known check changes anything."""

from __future__ import annotations

import time
from typing import Any

import httpx

from paymesh.platform import Platform
from paymesh.providers.connectors.kyc import CALLBACK_PATH, kyc_webhook_secret
from tests.profiles.fixtures import World
from tests.profiles.support import (
    callback_body,
    customer,
    delivered,
    eventually,
    kyc_body,
    outbox,
    service,
    signed,
)


async def check_of(world: World, check_id: str) -> dict[str, Any]:
    response = await world.http.get(
        f"/v1/providers/kyc/checks/{check_id}", headers=service(world.platform, "profiles")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def decided_events(platform: Platform) -> list[dict[str, Any]]:
    return await outbox(platform, "providers", "providers.kyc.decided")


async def submitted_check(world: World, number: str) -> tuple[Any, str, str]:
    """(customer, our check id, the vendor's check id) once the vendor has the check."""
    carol = await customer(world.platform, world.http, f"carol{number[-4:]}")
    response = await world.http.post(
        "/v1/profiles/me/kyc", json=kyc_body(number), headers=carol.headers
    )
    assert response.status_code == 202, response.text

    async def vendor_check() -> Any:
        return next(iter(world.simulator.checks.values()), None)

    vendor = await eventually(vendor_check)
    return carol, vendor.reference, vendor.id


async def post(world: World, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """Like the vendor: plain HTTP to the platform's public callback URL, no token."""
    return await world.http.post(CALLBACK_PATH, content=body, headers=headers)


class TestAuthenticCallbacks:
    async def test_a_replayed_callback_is_refused_and_changes_nothing(self, world: World) -> None:
        _, check_id, _ = await submitted_check(world, "P12345678")
        await eventually(lambda: _status_is(world, check_id, "verified"))
        last = await delivered(world.simulator)
        assert last.status == 200
        before = await decided_events(world.platform)

        replay = await post(world, last.body, last.headers)
        # The same event re-signed now (fresh timestamp, new signature): still the same event.
        resigned = await post(
            world,
            last.body,
            signed(kyc_webhook_secret(world.platform.settings), last.body),
        )

        assert replay.status_code == resigned.status_code == 409
        assert replay.json()["code"] == resigned.json()["code"] == "callback_replayed"
        assert await decided_events(world.platform) == before
        assert (await check_of(world, check_id))["status"] == "verified"

    async def test_a_forged_decision_is_refused_and_changes_nothing(self, world: World) -> None:
        carol, check_id, _ = await submitted_check(world, "P12340000")
        await eventually(lambda: _status_is(world, check_id, "rejected"))

        async def profile_rejected() -> bool:
            me = await world.http.get("/v1/profiles/me", headers=carol.headers)
            return bool(me.json()["kyc"]["status"] == "rejected")

        await eventually(profile_rejected)  # profiles has consumed the decision
        last = await delivered(world.simulator)
        forged = last.body.replace(b'"rejected"', b'"verified"').replace(
            last.body[last.body.index(b'"id":"') : last.body.index(b'",') + 2],
            b'"id":"vev_forged",',
        )
        assert forged != last.body
        before = await decided_events(world.platform)

        tampered = await post(world, forged, last.headers)
        other_secret = await post(world, forged, signed("not-the-vendor-secret", forged))
        unsigned = await post(world, forged, {"content-type": "application/json"})

        for response in (tampered, other_secret, unsigned):
            assert response.status_code == 400, response.text
            assert response.json()["code"] == "invalid_callback_signature"
        assert await decided_events(world.platform) == before
        assert (await check_of(world, check_id))["status"] == "rejected"
        kyc = (await world.http.get("/v1/profiles/me", headers=carol.headers)).json()["kyc"]
        assert (kyc["status"], kyc["level"]) == ("rejected", "none")


class TestStaleAndUnknownCallbacks:
    async def test_a_stale_timestamp_is_refused_and_a_fresh_one_accepted(
        self, world: World
    ) -> None:
        world.simulator.delay_seconds = 30.0  # the vendor stays silent: the test speaks
        _, check_id, vendor_check_id = await submitted_check(world, "P12345678")
        await eventually(lambda: _has_vendor_id(world, check_id))
        secret = kyc_webhook_secret(world.platform.settings)
        body = callback_body(check_id, vendor_check_id, "verified", "vev_test_1")
        tolerance = world.platform.settings.providers.kyc_callback_tolerance_seconds

        stale = await post(world, body, signed(secret, body, int(time.time()) - tolerance - 5))
        future = await post(world, body, signed(secret, body, int(time.time()) + tolerance + 5))

        assert stale.status_code == future.status_code == 400
        assert stale.json()["code"] == "callback_timestamp_out_of_tolerance"
        assert (await check_of(world, check_id))["status"] == "pending"
        assert await decided_events(world.platform) == []

        fresh = await post(world, body, signed(secret, body))

        assert fresh.status_code == 200, fresh.text
        assert fresh.json() == {"status": "accepted", "check_id": check_id}
        assert (await check_of(world, check_id))["status"] == "verified"
        assert len(await decided_events(world.platform)) == 1
        # A final check takes no second decision, even a new, well-signed event.
        later = callback_body(check_id, vendor_check_id, "rejected", "vev_test_2")
        second = await post(world, later, signed(secret, later))
        assert second.status_code == 409
        assert second.json()["code"] == "kyc_check_already_decided"
        assert (await check_of(world, check_id))["status"] == "verified"

    async def test_unknown_checks_and_bodies(self, world: World) -> None:
        secret = kyc_webhook_secret(world.platform.settings)
        unknown = callback_body("kyc_nope", "vck_nope", "verified", "vev_1")
        not_a_decision = b'{"id": "vev_2", "type": "check.created"}'
        not_json = b"\xff\xfe"

        missing = await post(world, unknown, signed(secret, unknown))
        malformed = await post(world, not_a_decision, signed(secret, not_a_decision))
        garbage = await post(world, not_json, signed(secret, not_json))
        bad_stamp = await post(world, unknown, {"kyc-timestamp": "soon", "kyc-signature": "v1=0"})

        assert missing.status_code == 404
        assert missing.json()["code"] == "kyc_check_not_found"
        assert malformed.status_code == 400
        assert malformed.json()["code"] == "malformed_callback"
        assert garbage.status_code == 400
        assert bad_stamp.status_code == 400
        assert bad_stamp.json()["code"] == "invalid_callback_signature"


async def _status_is(world: World, check_id: str, status: str) -> bool:
    response = await world.http.get(
        f"/v1/providers/kyc/checks/{check_id}", headers=service(world.platform, "profiles")
    )
    return response.status_code == 200 and response.json()["status"] == status


async def _has_vendor_id(world: World, check_id: str) -> bool:
    # The check exists (committed) once providers answered profiles' task.
    response = await world.http.get(
        f"/v1/providers/kyc/checks/{check_id}", headers=service(world.platform, "profiles")
    )
    return response.status_code == 200
