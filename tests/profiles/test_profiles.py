"""Profiles through the gateway: made on identity's events and on first use, read and
edited by the customer with a real identity token, read by services and operators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.profiles.support import (
    NOWHERE,
    SERVICES,
    bearer,
    customer,
    eventually,
    outbox,
    service,
    with_providers,
)

SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"country": "XX"}, "country"),
    ({"country": "gb"}, "country"),
    ({"country": "GBR"}, "country"),
    ({"phone": "07700900123"}, "phone"),
    ({"phone": "+44 7700 900123"}, "phone"),
    ({"phone": "+4477009001230000"}, "phone"),
    ({"date_of_birth": "2999-01-01"}, "date_of_birth"),
    ({"date_of_birth": "1899-12-31"}, "date_of_birth"),
    ({"date_of_birth": 631152000}, "date_of_birth"),
    ({"date_of_birth": "1988-02-30"}, "date_of_birth"),
    ({"date_of_birth": "1988-02-28T00:00:00Z"}, "date_of_birth"),
    ({"given_name": "x" * 101}, "given_name"),
    ({"given_name": "   "}, "given_name"),
    ({"given_name": "Eve\u202eevil"}, "given_name"),
    ({"given_name": "Eve\x07"}, "given_name"),
    ({"family_name": 42}, "family_name"),
    ({"address": {"line1": "1 High Street"}}, "address.city"),
    ({"address": {"line1": "x" * 201, "city": "London"}}, "address.line1"),
    (
        {"address": {"line1": "1 A St", "city": "L", "postal_code": "<script>"}},
        "address.postal_code",
    ),
    ({"email": "eve@example.org"}, "email"),
    ({"kyc": {"level": "full"}}, "kyc"),
]


async def profile_of(http: httpx.AsyncClient, platform: Platform, user_id: str) -> Any:
    response = await http.get(f"/v1/profiles/{user_id}", headers=service(platform))
    return response.json() if response.status_code == 200 else None


HOSTILE: list[tuple[bytes, int, str]] = [
    (b'{"country": "GB", "country": "US"}', 400, "duplicate_json_key"),
    (b'{"given_name": "Eve\\u0000"}', 400, "invalid_characters"),
    (b'{"given_name": "\\ud800"}', 400, "invalid_characters"),
    (b'{"given_name": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "malformed_json"),
    (b'{"country": NaN}', 400, "malformed_json"),
    (b"not json", 400, "malformed_json"),
]


class TestProfileCreation:
    async def test_registration_makes_a_profile(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        carol = await customer(platform, http, "carol")

        profile = await eventually(lambda: profile_of(http, platform, carol.id))

        assert profile["user_id"] == carol.id
        assert profile["kyc"] == {
            "status": "none",
            "level": "none",
            "reasons": [],
            "submission_id": None,
        }
        created = await outbox(platform, "profiles", "profiles.profile.created")
        assert [event["data"] for event in created] == [{"user_id": carol.id}]

    async def test_a_user_provisioned_over_scim_gets_a_profile(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        admin = bearer(platform, "usr_admin", "admin")
        body = {"schemas": [SCIM_USER], "userName": "dave", "emails": [{"value": "d@x.example"}]}
        created = await http.post("/scim2/Users", json=body, headers=admin)
        assert created.status_code == 201, created.text

        profile = await eventually(lambda: profile_of(http, platform, created.json()["id"]))

        assert profile["kyc"]["status"] == "none"

    async def test_a_customer_read_before_the_sign_up_event_arrives_gets_the_blank_profile(
        self, make_platform: Callable[..., Any], settings: Settings
    ) -> None:
        """A payment right after sign-up asks for the payer's profile and limits before
        profiles has consumed `identity.user.registered` (here: never, no workers run)."""
        platform = await make_platform(
            SERVICES,
            settings_override=with_providers(settings, kyc_vendor_url=NOWHERE),
            run_workers=False,
        )
        async with http_client(platform) as client:
            carol = await customer(platform, client, "carol")
            profile = await client.get(f"/v1/profiles/{carol.id}", headers=service(platform))
            limits = await client.get(f"/v1/profiles/{carol.id}/limits", headers=service(platform))
            unknown = await client.get("/v1/profiles/usr_nobody", headers=service(platform))

        assert profile.status_code == 200, profile.text
        assert profile.json()["kyc"]["status"] == "none"
        assert limits.status_code == 200, limits.text
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "profile_not_found"
        created = await outbox(platform, "profiles", "profiles.profile.created")
        assert [event["data"] for event in created] == [{"user_id": carol.id}]

    @pytest.mark.parametrize(
        "user_id", ["usr%20x", "usr%00x", "%ED%A0%80", "usr:" + "9" * 60, "..", "usr_%F0%9F%92%B8"]
    )
    async def test_a_hostile_user_id_is_a_plain_404_and_makes_nothing(
        self, platform: Platform, http: httpx.AsyncClient, user_id: str
    ) -> None:
        """Ids identity cannot hold are not passed on as a server error, nor made."""
        for path in (f"/v1/profiles/{user_id}", f"/v1/profiles/{user_id}/limits"):
            response = await http.get(path, headers=service(platform))
            assert response.status_code in (400, 404), (path, response.text)
        assert await outbox(platform, "profiles", "profiles.profile.created") == []

    async def test_first_use_copies_identity_and_makes_one_profile(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        carol = await customer(
            platform,
            http,
            "carol",
            email="carol@example.org",
            given_name="Carol",
            family_name="Jones",
            phone="+447700900123",
        )

        first = await http.get("/v1/profiles/me", headers=carol.headers)
        again = await http.get("/v1/profiles/me", headers=carol.headers)

        assert first.status_code == 200, first.text
        profile = first.json()
        assert profile["email"] == "carol@example.org"
        assert profile["legal_name"] == "Carol Jones"
        assert profile["phone"] == "+447700900123"
        assert again.json() == profile
        await eventually(lambda: profile_of(http, platform, carol.id))
        created = await outbox(platform, "profiles", "profiles.profile.created")
        assert len(created) == 1

    async def test_a_changed_email_is_copied_on_the_next_visit(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        carol = await customer(platform, http, "carol", email="carol@example.org")
        first = (await http.get("/v1/profiles/me", headers=carol.headers)).json()

        changed = await http.patch(
            "/v1/identity/users/me", json={"email": "carol@new.example"}, headers=carol.headers
        )
        assert changed.status_code == 200, changed.text

        async def new_email() -> str | None:
            profile = (await http.get("/v1/profiles/me", headers=carol.headers)).json()
            return profile["email"] if profile["email"] != first["email"] else None

        assert await eventually(new_email) == "carol@new.example"


class TestUpdateProfile:
    async def test_fields_change_and_an_event_names_them(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        carol = await customer(platform, http, "carol", email="carol@example.org")
        body = {
            "given_name": "Carol",
            "family_name": "Jones",
            "date_of_birth": "1988-02-29",
            "country": "GB",
            "phone": "+447700900123",
            "address": {"line1": "1 High Street", "city": "London", "postal_code": "sw1a 1aa"},
        }

        response = await http.patch("/v1/profiles/me", json=body, headers=carol.headers)

        assert response.status_code == 200, response.text
        profile = response.json()
        assert profile["legal_name"] == "Carol Jones"
        assert profile["email"] == "carol@example.org"  # copied from identity on first use
        assert profile["date_of_birth"] == "1988-02-29"
        assert profile["address"] == {
            "line1": "1 High Street",
            "line2": None,
            "city": "London",
            "region": None,
            "postal_code": "SW1A 1AA",
        }
        updated = await outbox(platform, "profiles", "profiles.profile.updated")
        assert updated[-1]["data"] == {
            "user_id": carol.id,
            "fields": [
                "address",
                "country",
                "date_of_birth",
                "family_name",
                "given_name",
                "phone",
            ],
        }
        # Another customer's view is unaffected, and null clears a field.
        cleared = await http.patch("/v1/profiles/me", json={"phone": None}, headers=carol.headers)
        assert cleared.json()["phone"] is None
        assert cleared.json()["country"] == "GB"

    async def test_invalid_input_is_422_and_changes_nothing(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        # One customer for every case: registering one costs two Argon2 hashes.
        carol = await customer(platform, http, "carol")
        await http.get("/v1/profiles/me", headers=carol.headers)
        good = {"given_name": "Carol", "country": "GB", "phone": "+447700900123"}
        before = (await http.patch("/v1/profiles/me", json=good, headers=carol.headers)).json()

        for body, field in INVALID:
            response = await http.patch(
                "/v1/profiles/me", json={"family_name": "Changed", **body}, headers=carol.headers
            )

            assert response.status_code == 422, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["code"] == "validation_failed"
            assert any(error["field"].startswith(field) for error in problem["errors"]), (
                body,
                problem,
            )
        after = (await http.get("/v1/profiles/me", headers=carol.headers)).json()
        assert after == before
        assert len(await outbox(platform, "profiles", "profiles.profile.updated")) == 1

    async def test_hostile_bodies_are_refused(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        carol = await customer(platform, http, "carol")
        headers = carol.headers | {"content-type": "application/json"}

        for content, status, code in HOSTILE:
            response = await http.patch("/v1/profiles/me", content=content, headers=headers)

            assert response.status_code == status, (content[:40], response.text)
            assert response.json()["code"] == code
        as_text = carol.headers | {"content-type": "text/plain"}
        text = await http.patch("/v1/profiles/me", content=b"country=GB", headers=as_text)
        assert text.status_code == 415
        huge = await http.patch(
            "/v1/profiles/me", json={"given_name": "x" * (2 * 1024 * 1024)}, headers=carol.headers
        )
        assert huge.status_code == 413
        assert await outbox(platform, "profiles", "profiles.profile.updated") == []


class TestAccess:
    async def test_customers_see_their_own_profile_only(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        carol = await customer(platform, http, "carol")
        mallory = await customer(platform, http, "mallory")
        await http.get("/v1/profiles/me", headers=carol.headers)

        own = await http.get(f"/v1/profiles/{carol.id}", headers=carol.headers)
        other = await http.get(f"/v1/profiles/{carol.id}", headers=mallory.headers)
        other_limits = await http.get(f"/v1/profiles/{carol.id}/limits", headers=mallory.headers)
        missing = await http.get("/v1/profiles/usr_nobody", headers=mallory.headers)

        assert own.status_code == 200
        # Another customer's profile is as absent as one that does not exist.
        assert other.status_code == missing.status_code == other_limits.status_code == 404
        assert other.json()["code"] == missing.json()["code"] == "profile_not_found"

    async def test_services_and_operators_read_any_profile(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        carol = await customer(platform, http, "carol", given_name="Carol", family_name="Jones")
        await http.get("/v1/profiles/me", headers=carol.headers)

        for headers in (
            service(platform),
            bearer(platform, "usr_ops", "ops"),
            bearer(platform, "usr_admin", "admin"),
        ):
            response = await http.get(f"/v1/profiles/{carol.id}", headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["legal_name"] == "Carol Jones"

    @pytest.mark.parametrize("role", ["merchant", "finance", "auditor"])
    async def test_other_roles_are_403(
        self, platform: Platform, http: httpx.AsyncClient, role: str
    ) -> None:
        response = await http.get("/v1/profiles/usr_x", headers=bearer(platform, "usr_y", role))

        assert response.status_code == 403

    async def test_me_is_for_customers(self, platform: Platform, http: httpx.AsyncClient) -> None:
        as_service = await http.get("/v1/profiles/me", headers=service(platform))
        as_ops = await http.patch(
            "/v1/profiles/me", json={"country": "GB"}, headers=bearer(platform, "usr_ops", "ops")
        )

        assert as_service.status_code == as_ops.status_code == 403

    async def test_missing_bad_and_expired_tokens_are_401(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        expired = bearer(platform, "usr_carol", "customer", ttl_seconds=-120)
        for headers in ({}, {"authorization": "Bearer not-a-token"}, expired):
            response = await http.get("/v1/profiles/me", headers=headers)
            assert response.status_code == 401, response.text
        response = await http.patch("/v1/profiles/me", json={"country": "GB"})
        assert response.status_code == 401

    async def test_a_revoked_customer_token_is_refused(
        self, platform: Platform, http: httpx.AsyncClient
    ) -> None:
        carol = await customer(platform, http, "carol")
        admin = bearer(platform, "usr_admin", "admin")
        disabled = await http.post(f"/v1/identity/users/{carol.id}/disable", headers=admin)
        assert disabled.status_code == 200, disabled.text

        response = await http.get("/v1/profiles/me", headers=carol.headers)

        assert response.status_code == 401
