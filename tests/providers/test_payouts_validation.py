"""Beneficiary validation before any money moves: each fault its own 422 code, and the
partner bank's own account lookup (the simulator, over real HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.profiles.support import bearer
from tests.providers.test_payouts_support import (
    BANK,
    UNKNOWN_ACCOUNT,
    PayoutWorld,
    payout_world,
)

__all__ = ["payout_world"]

KNOWN_IBAN = "DE89370400440532013000"  # the simulator's demo account of Lena Fischer


def validation(currency: str = "EUR", **beneficiary: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Lena Fischer",
        "iban": "de89 3704 0044 0532 0130 00",
        "bic": "cobadeffxxx",
        "country": "DE",
    }
    values.update(beneficiary)
    return {"currency": currency, "beneficiary": {k: v for k, v in values.items() if v is not None}}


async def validate(world: PayoutWorld, body: dict[str, Any], **headers: str) -> Any:
    return await world.http.post(
        "/v1/providers/beneficiaries/validate", json=body, headers=headers or world.headers
    )


class TestValidateBeneficiary:
    async def test_a_known_account_is_normalised_with_its_bank_and_holder(
        self, payout_world: PayoutWorld
    ) -> None:
        response = await validate(payout_world, validation())

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["bank"] == BANK
        assert body["account_name"] == "Lena Fischer"
        assert body["beneficiary"]["iban"] == KNOWN_IBAN
        assert body["beneficiary"]["bic"] == "COBADEFFXXX"

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            (validation(iban="DE89370400440532013001"), "invalid_iban"),
            (validation(iban="DE89 3704 0044"), "invalid_iban"),
            (validation(bic="COBA1EFF"), "invalid_bic"),
            (validation(country="FR"), "iban_country_mismatch"),
            (validation(currency="JPY"), "unsupported_currency"),
            (validation(currency="USD"), "unsupported_currency"),
            (
                validation(
                    iban=None,
                    bic=None,
                    country="US",
                    account_number="000123456789",
                    bank_code="021000021",
                ),
                "unsupported_country",
            ),
            (validation(iban=UNKNOWN_ACCOUNT), "beneficiary_account_not_found"),
            (validation(name=None), "beneficiary_name_required"),
            (validation(name="  "), "beneficiary_name_required"),
        ],
    )
    async def test_each_fault_is_a_422_with_its_own_code(
        self, payout_world: PayoutWorld, body: dict[str, Any], code: str
    ) -> None:
        response = await validate(payout_world, body)

        assert response.status_code == 422, response.text
        assert response.json()["code"] == code

    async def test_only_the_platforms_services_may_ask(self, payout_world: PayoutWorld) -> None:
        customer = bearer(payout_world.platform, "usr_someone", "customer")

        response = await validate(payout_world, validation(), **customer)

        assert response.status_code == 403
