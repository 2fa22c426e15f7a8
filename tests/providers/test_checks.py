"""The providers API for services, the KYC connector against the simulator (real HTTP),
and who may reach what at the gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from paymesh.providers import repository
from paymesh.providers.connectors.kyc import CALLBACK_PATH, kyc_api_key
from paymesh.providers.simulators.kyc import KycSimulator, scripted_outcome
from tests.profiles.support import (
    bearer,
    customer,
    kyc_body,
    loopback_socket,
    service,
    serving,
    url_of,
)


def check_body(reference: str = "kys_test_1", number: str = "P12345678") -> dict[str, Any]:
    return {"reference": reference, **kyc_body(number)}


class TestAccess:
    async def test_only_services_create_checks(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        carol = await customer(platform, http, "carol")
        for headers, status in (
            ({}, 401),
            (carol.headers, 403),
            (bearer(platform, "usr_ops", "ops"), 403),
            (bearer(platform, "usr_admin", "admin"), 403),
        ):
            response = await http.post(
                "/v1/providers/kyc/checks", json=check_body(), headers=headers
            )
            assert response.status_code == status, response.text
        reading = await http.get("/v1/providers/kyc/checks/kyc_x", headers=carol.headers)
        assert reading.status_code == 403

    async def test_the_callback_route_is_public_and_only_that(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        anonymous_callback = await http.post(CALLBACK_PATH, json={})
        anonymous_get = await http.get(CALLBACK_PATH)
        anonymous_checks = await http.get("/v1/providers/kyc/checks/kyc_x")

        # Past the gateway, refused by the service for want of a signature.
        assert anonymous_callback.status_code == 400
        assert anonymous_callback.json()["code"] == "invalid_callback_signature"
        assert anonymous_get.status_code == anonymous_checks.status_code == 401

    async def test_an_unreachable_vendor_is_503_and_nothing_is_kept(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        headers = service(platform, "profiles")

        response = await http.post("/v1/providers/kyc/checks", json=check_body(), headers=headers)

        assert response.status_code == 503
        assert response.json()["code"] == "kyc_vendor_unavailable"
        runtime = platform.runtimes["providers"]
        async with runtime.database.transaction() as session:
            assert await repository.find_check(session, "service-profiles", "kys_test_1") is None

    async def test_invalid_checks_are_422(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        headers = service(platform, "profiles")
        for body in (
            check_body(reference="bad reference!"),
            check_body(number="12"),
            {**check_body(), "document_country": "XX"},
            {"reference": "kys_1"},
        ):
            response = await http.post("/v1/providers/kyc/checks", json=body, headers=headers)
            assert response.status_code == 422, response.text


class TestConnectorAgainstTheSimulator:
    async def test_the_same_reference_is_one_vendor_check(
        self, make_platform: Any, settings: Settings
    ) -> None:
        vendor_socket = loopback_socket()
        configured = settings.model_copy(
            update={
                "providers": settings.providers.model_copy(
                    update={"kyc_vendor_url": url_of(vendor_socket)}
                )
            }
        )
        simulator = KycSimulator.from_settings(configured)
        simulator.delay_seconds = 30.0
        async with serving(simulator.app(), vendor_socket, lifespan="on"):
            platform: Platform = await make_platform(
                ["identity", "providers"], settings_override=configured
            )
            headers = service(platform, "profiles")
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=platform), base_url="http://paymesh.test"
            ) as http:
                first = await http.post(
                    "/v1/providers/kyc/checks", json=check_body(), headers=headers
                )
                again = await http.post(
                    "/v1/providers/kyc/checks", json=check_body(), headers=headers
                )
                racing = await asyncio.gather(
                    *(
                        http.post(
                            "/v1/providers/kyc/checks",
                            json=check_body(reference="kys_race"),
                            headers=headers,
                        )
                        for _ in range(4)
                    )
                )

        assert first.status_code == 201, first.text
        assert again.status_code == 200
        assert again.json() == first.json()
        assert first.json()["status"] == "pending"
        assert sorted(response.status_code for response in racing) == [200, 200, 200, 201]
        assert len({response.json()["id"] for response in racing}) == 1
        # One vendor check per reference, however many requests raced for it.
        assert sorted(check.reference for check in simulator.checks.values()) == sorted(
            [first.json()["id"], racing[0].json()["id"]]
        )


class TestSimulator:
    @pytest.mark.parametrize(
        ("number", "outcome", "codes"),
        [
            ("P12340000", "rejected", ["document_expired"]),
            ("P12349999", "needs_review", ["manual_review_required"]),
            ("P12345678", "verified", []),
            ("0000P1234", "verified", []),
        ],
    )
    def test_outcomes_are_scripted_by_the_document_number(
        self, number: str, outcome: str, codes: list[str]
    ) -> None:
        decided, reasons = scripted_outcome(number)

        assert decided == outcome
        assert [reason["code"] for reason in reasons] == codes

    async def test_the_api_key_is_required_and_the_callback_signed(
        self, settings: Settings
    ) -> None:
        received: list[tuple[dict[str, str], bytes]] = []
        arrived = asyncio.Event()

        async def receiver(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            headers = {key.decode(): value.decode() for key, value in scope["headers"]}
            received.append((headers, body))
            arrived.set()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        vendor_socket, receiver_socket = loopback_socket(), loopback_socket()
        simulator = KycSimulator.from_settings(settings)
        simulator.delay_seconds = 0.0
        vendor = url_of(vendor_socket)
        request = {
            "reference": "kyc_1",
            "applicant": {
                "given_name": "Carol",
                "family_name": "Jones",
                "date_of_birth": "1988-02-29",
                "country": "GB",
            },
            "document": {"type": "passport", "number": "P12340000", "issuing_country": "GB"},
            "callback_url": url_of(receiver_socket) + "/hook",
        }
        async with (
            serving(simulator.app(), vendor_socket, lifespan="on"),
            serving(receiver, receiver_socket),
            httpx.AsyncClient(base_url=vendor) as http,
        ):
            keyless = await http.post("/v1/checks", json=request)
            wrong = await http.post(
                "/v1/checks", json=request, headers={"authorization": "Bearer wrong"}
            )
            good = await http.post(
                "/v1/checks",
                json=request,
                headers={"authorization": f"Bearer {kyc_api_key(settings)}"},
            )
            await asyncio.wait_for(arrived.wait(), 10)

        assert keyless.status_code == wrong.status_code == 401
        assert good.status_code == 202
        assert good.json()["status"] == "pending"
        headers, body = received[0]
        assert headers["kyc-signature"].startswith("v1=")
        assert b'"status":"rejected"' in body
        assert b"document_expired" in body
        # The vendor never echoes the applicant's data in its callback.
        assert b"P12340000" not in body
        assert b"1988-02-29" not in body
