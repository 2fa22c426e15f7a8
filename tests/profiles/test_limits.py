"""Limits per KYC level are configuration data, served per user."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from paymesh.kernel.config import ProfilesSettings, Settings
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.profiles.support import NOWHERE, SERVICES, customer, service, with_providers

LEVEL = {"per_transaction": 500, "daily": 1_000, "monthly": 5_000}


class TestLimits:
    async def test_the_configured_limits_of_the_users_level(
        self, make_platform: Any, settings: Settings
    ) -> None:
        limits = {
            "none": LEVEL,
            "basic": {"per_transaction": 600, "daily": 2_000, "monthly": 6_000},
            "full": {"per_transaction": 700, "daily": 3_000, "monthly": 7_000},
        }
        configured = with_providers(settings, kyc_vendor_url=NOWHERE).model_copy(
            update={"profiles": ProfilesSettings(limits=limits)}  # type: ignore[arg-type]
        )
        platform: Platform = await make_platform(SERVICES, settings_override=configured)
        async with http_client(platform) as http:
            carol = await customer(platform, http, "carol")
            await http.get("/v1/profiles/me", headers=carol.headers)

            own = await http.get("/v1/profiles/me/limits", headers=carol.headers)
            by_id = await http.get(f"/v1/profiles/{carol.id}/limits", headers=service(platform))
            unknown = await http.get("/v1/profiles/usr_nobody/limits", headers=service(platform))

        expected = {"user_id": carol.id, "kyc_level": "none", "currency": "USD", **LEVEL}
        assert own.status_code == 200, own.text
        assert own.json() == by_id.json() == expected
        assert unknown.status_code == 404

    async def test_limits_need_a_token(self, platform: Platform, http: httpx.AsyncClient) -> None:
        response = await http.get("/v1/profiles/usr_x/limits")

        assert response.status_code == 401


class TestLimitSettings:
    def test_defaults_rise_with_the_level(self) -> None:
        limits = ProfilesSettings().limits

        assert limits["none"].per_transaction < limits["basic"].per_transaction
        assert limits["basic"].monthly < limits["full"].monthly

    @pytest.mark.parametrize(
        "limits",
        [
            {"none": LEVEL, "basic": LEVEL},
            {"none": LEVEL, "basic": LEVEL, "full": LEVEL, "gold": LEVEL},
            {"none": {**LEVEL, "daily": 100}, "basic": LEVEL, "full": LEVEL},
            {"none": LEVEL, "basic": {**LEVEL, "monthly": 10}, "full": LEVEL},
            {"none": {**LEVEL, "per_transaction": 900}, "basic": LEVEL, "full": LEVEL},
            {"none": {**LEVEL, "daily": -1}, "basic": LEVEL, "full": LEVEL},
            {"none": {**LEVEL, "daily": 1.5}, "basic": LEVEL, "full": LEVEL},
        ],
    )
    def test_inconsistent_limits_are_refused(self, limits: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            ProfilesSettings(limits=limits)  # type: ignore[arg-type]

    def test_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(
            "PAYMESH_PROFILES_LIMITS",
            '{"none": {"per_transaction": 1, "daily": 2, "monthly": 3},'
            ' "basic": {"per_transaction": 1, "daily": 2, "monthly": 3},'
            ' "full": {"per_transaction": 9, "daily": 9, "monthly": 9}}',
        )

        assert Settings(_env_file=None).profiles.limits["full"].monthly == 9  # type: ignore[call-arg]
