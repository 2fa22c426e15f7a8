"""`paymesh up --demo`: identity's demo customers get profiles."""

from __future__ import annotations

from sqlalchemy import func, select

from paymesh.platform import Platform
from paymesh.profiles.models import Profile
from tests.conftest import http_client
from tests.profiles.support import bearer


async def test_demo_customers_get_profiles(platform: Platform) -> None:
    await platform.seed_demo()
    await platform.seed_demo()  # seeding again changes nothing
    ops = bearer(platform, "usr_ops", "ops")
    admin = bearer(platform, "usr_admin", "admin", scopes=["identity:admin"])
    async with http_client(platform) as http:
        users = (await http.get("/v1/identity/users", headers=admin)).json()["data"]
        ids = {user["username"]: user["id"] for user in users}
        alice = (await http.get(f"/v1/profiles/{ids['alice']}", headers=ops)).json()
        bob = (await http.get(f"/v1/profiles/{ids['bob']}", headers=ops)).json()
        admin_profile = await http.get(f"/v1/profiles/{ids['admin']}", headers=ops)

    assert alice["legal_name"] == "Alice Liddell"
    assert alice["email"] == "alice@paymesh.example"
    assert alice["country"] == "GB"
    assert alice["kyc"]["status"] == "verified"
    assert alice["kyc"]["level"] == "full"
    assert bob["legal_name"] == "Bob Builder"
    assert bob["kyc"]["status"] == "none"
    assert admin_profile.status_code == 404  # operators are not customers


async def test_no_demo_profiles_without_development_tokens(platform: Platform) -> None:
    platform.runtimes["profiles"].settings = platform.settings.model_copy(
        update={"env": "production"}
    )
    profiles_spec = platform.runtimes["profiles"].spec
    assert profiles_spec.seed_demo is not None
    await profiles_spec.seed_demo(platform.runtimes["profiles"])
    async with platform.runtimes["profiles"].database.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(Profile))).scalar() == 0
