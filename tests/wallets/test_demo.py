"""`paymesh up --demo`: the demo customers get funded wallets, and seeding twice changes
nothing."""

from __future__ import annotations

from tests.wallets.conftest import LEGACY, World


class TestDemo:
    async def test_demo_customers_have_funded_wallets(self, world: World) -> None:
        await world.platform.seed_demo()
        await world.platform.seed_demo()
        token = await world.client.post(
            "/oauth2/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": "paymesh-demo-password",
            },
            auth=LEGACY,
        )
        alice = {"authorization": f"Bearer {token.json()['access_token']}"}
        listed = await world.client.get("/v1/wallets", headers=alice)
        balances = {item["currency"]: item["balance"]["posted"] for item in listed.json()["data"]}
        assert balances == {"USD": 25_000, "EUR": 12_000}
