"""Risk keeps what profiles says of a customer (risk/profile_facts.py) only until profiles
reports a change: a customer verified, or renamed to a listed name, is judged on the new
facts from the moment risk has the change event on — never on the kept copy after it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from paymesh.profiles.schemas import Profile
from paymesh.risk.profile_facts import CachedProfiles
from tests.profiles.support import eventually, kyc_body
from tests.risk.support import RiskWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORDINARY = {"name": "Maria Lopez", "country": "ES"}


@pytest.fixture
def asked(shared_world: RiskWorld) -> Iterator[list[str]]:
    """The customers risk asked profiles about, in order."""
    facts: CachedProfiles = shared_world.platform.runtimes["risk"].state["profile_facts"]
    remote: Any = facts._profiles
    original = remote.get_profile
    seen: list[str] = []

    async def counting(user_id: str) -> Profile:
        seen.append(user_id)
        return await original(user_id)

    remote.get_profile = counting
    yield seen
    remote.get_profile = original


def rules_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [reason["rule"] for reason in response.json()["reasons"]]


async def test_profiles_is_asked_once_while_nothing_changes(
    shared_world: RiskWorld, asked: list[str]
) -> None:
    customer_id, _ = await shared_world.customer(verified=True)

    async def settled() -> bool:
        # Until risk has consumed the KYC flow's events (each may end a kept copy), an
        # evaluation may ask again; then one evaluation leaves the count as it was.
        before = asked.count(customer_id)
        assert (await shared_world.evaluate(customer_id, 100)).status_code == 200
        return before > 0 and asked.count(customer_id) == before

    await eventually(settled)
    settled_at = asked.count(customer_id)
    for _ in range(3):
        assert (await shared_world.evaluate(customer_id, 100)).status_code == 200
    assert asked.count(customer_id) == settled_at


async def test_a_verification_counts_from_the_next_evaluation(
    shared_world: RiskWorld, asked: list[str]
) -> None:
    customer_id, headers = await shared_world.customer()
    assert rules_of(await shared_world.evaluate(customer_id, 100)) == ["kyc_not_verified"]
    submitted = await shared_world.http.post(
        "/v1/profiles/me/kyc",
        json=kyc_body("P12345678"),
        headers=headers,
    )
    assert submitted.status_code == 202, submitted.text

    async def judged_verified() -> bool:
        # (Velocity may add its reason: this polls with evaluations.)
        return "kyc_not_verified" not in rules_of(await shared_world.evaluate(customer_id, 100))

    await eventually(judged_verified)
    assert asked.count(customer_id) >= 2


async def test_a_rename_to_a_listed_name_is_screened_once_profiles_reports_it(
    shared_world: RiskWorld, asked: list[str]
) -> None:
    customer_id, headers = await shared_world.customer()
    named = await shared_world.http.patch(
        "/v1/profiles/me", json={"given_name": "Ana", "family_name": "Silva"}, headers=headers
    )
    assert named.status_code == 200, named.text
    assert "sanctions" not in rules_of(
        await shared_world.evaluate(customer_id, 100, counterparty=ORDINARY)
    )
    renamed = await shared_world.http.patch(
        "/v1/profiles/me",
        json={"given_name": "Won Ho", "family_name": "Ri", "country": "KP"},  # UN 6908555
        headers=headers,
    )
    assert renamed.status_code == 200, renamed.text

    async def screened() -> bool:
        response = await shared_world.evaluate(customer_id, 100, counterparty=ORDINARY)
        return response.json()["decision"] == "review"

    await eventually(screened)
    # The kept copy went with the change event: asked before and after the rename (and
    # before the first evaluation, if profiles' `created` event came late).
    assert 2 <= asked.count(customer_id) <= 3


async def test_with_no_cache_every_evaluation_asks(
    shared_world: RiskWorld, asked: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    facts: CachedProfiles = shared_world.platform.runtimes["risk"].state["profile_facts"]
    monkeypatch.setattr(facts, "ttl_seconds", 0.0)
    customer_id, _ = await shared_world.customer()
    for _ in range(2):
        await shared_world.evaluate(customer_id, 100)
    assert asked.count(customer_id) == 2
