"""The demo data the README's identity tour uses works as documented."""

from __future__ import annotations

import httpx
import pytest

from paymesh.identity.demo import DEMO_CLIENT_SECRETS, DEMO_PASSWORD
from paymesh.platform import Platform


class TestDemoData:
    async def test_tour_requests(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await identity_platform.seed_demo()
        await identity_platform.seed_demo()  # seeding again changes nothing
        service = await identity.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "ledger:read"},
            auth=("demo-reporting", DEMO_CLIENT_SECRETS["demo-reporting"]),
        )
        assert service.status_code == 200, service.text
        legacy = ("demo-legacy", DEMO_CLIENT_SECRETS["demo-legacy"])
        login = await identity.post(
            "/oauth2/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": DEMO_PASSWORD,
                "scope": "openid profile email",
            },
            auth=legacy,
        )
        assert login.status_code == 200, login.text
        access = login.json()["access_token"]
        me = await identity.get("/oauth2/userinfo", headers={"authorization": f"Bearer {access}"})
        assert me.json()["preferred_username"] == "alice"
        seen = await identity.post("/oauth2/introspect", data={"token": access}, auth=legacy)
        assert seen.json()["roles"] == ["customer"]

    async def test_refused_in_production(self, identity_platform: Platform) -> None:
        identity_platform.settings = identity_platform.settings.model_copy(
            update={"env": "production"}
        )
        with pytest.raises(RuntimeError):
            await identity_platform.seed_demo()
