"""Opening, reading, access and hostile input, through the gateway."""

from __future__ import annotations

from tests.wallets.conftest import World, key


class TestOpenWallet:
    async def test_open_list_and_one_per_currency(self, world: World) -> None:
        carol = await world.customer("carol")
        usd = await world.open(carol, "USD")
        assert usd["status"] == "active"
        assert usd["owner_id"] == world.users["carol"]
        assert usd["balance"] == {"available": 0, "pending": 0, "posted": 0}
        await world.open(carol, "JPY")

        again = await world.client.post(
            "/v1/wallets", json={"currency": "USD"}, headers=carol | key()
        )
        assert again.status_code == 409
        assert again.json()["code"] == "wallet_exists"

        listed = await world.client.get("/v1/wallets", params={"limit": 1}, headers=carol)
        assert [item["currency"] for item in listed.json()["data"]] == ["USD"]
        rest = await world.client.get(
            "/v1/wallets", params={"cursor": listed.json()["next_cursor"]}, headers=carol
        )
        assert [item["currency"] for item in rest.json()["data"]] == ["JPY"]
        assert rest.json()["next_cursor"] is None
        opened = await world.events("wallets.wallet.opened")
        assert [event["currency"] for event in opened] == ["USD", "JPY"]

    async def test_replay_returns_the_same_wallet(self, world: World) -> None:
        carol = await world.customer("carol")
        headers = carol | key()
        first = await world.client.post("/v1/wallets", json={"currency": "EUR"}, headers=headers)
        second = await world.client.post("/v1/wallets", json={"currency": "EUR"}, headers=headers)
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json()["id"] == first.json()["id"]
        other = await world.client.post("/v1/wallets", json={"currency": "GBP"}, headers=headers)
        assert other.status_code == 422
        assert other.json()["code"] == "idempotency_key_reused"

    async def test_invalid_currency_is_422(self, world: World) -> None:
        carol = await world.customer("carol")
        bodies = [{"currency": "XXY"}, {"currency": "usd"}, {"currency": 840}, {}, {"x": 1}]
        for body in bodies:
            response = await world.client.post("/v1/wallets", json=body, headers=carol | key())
            assert response.status_code == 422, (body, response.text)
        listed = await world.client.get("/v1/wallets", headers=carol)
        assert listed.json()["data"] == []

    async def test_idempotency_key_is_required(self, world: World) -> None:
        carol = await world.customer("carol")
        response = await world.client.post("/v1/wallets", json={"currency": "USD"}, headers=carol)
        assert response.status_code == 400
        assert response.json()["code"] == "idempotency_key_required"

    async def test_anonymous_or_expired_is_401(self, world: World) -> None:
        response = await world.client.get("/v1/wallets")
        assert response.status_code == 401
        expired = world.platform.tokens.issue("finance-1", roles=["finance"], ttl_seconds=-120)
        response = await world.client.post(
            "/v1/wallets/wal_x/deposits",
            json={"amount": 1, "reference": "r"},
            headers={"authorization": f"Bearer {expired}"} | key(),
        )
        assert response.status_code == 401


class TestAccess:
    async def test_another_customers_wallet_is_404(self, world: World) -> None:
        carol = await world.customer("carol")
        dave = await world.customer("dave")
        wallet = await world.open(carol)
        assert (await world.deposit(wallet["id"], 5_000)).status_code == 201
        base = f"/v1/wallets/{wallet['id']}"
        for path in ("", "/transactions"):
            response = await world.client.get(base + path, headers=dave)
            assert response.status_code == 404, path
            assert response.json()["code"] == "wallet_not_found"
        hold = await world.hold(dave, wallet["id"], 100)
        assert hold.status_code == 404
        close = await world.client.post(f"{base}/close", headers=dave)
        assert close.status_code == 404
        listed = await world.client.get("/v1/wallets", headers=dave)
        assert listed.json()["data"] == []
        theirs = {"owner_id": world.users["carol"]}
        peek = await world.client.get("/v1/wallets", params=theirs, headers=dave)
        assert peek.json()["data"] == []
        staff = await world.client.get("/v1/wallets", params=theirs, headers=world.staff("ops"))
        assert [item["id"] for item in staff.json()["data"]] == [wallet["id"]]
        assert (await world.balance(wallet["id"]))["available"] == 5_000

    async def test_customer_cannot_deposit_withdraw_or_freeze(self, world: World) -> None:
        carol = await world.customer("carol")
        wallet = await world.open(carol)
        base = f"/v1/wallets/{wallet['id']}"
        body = {"amount": 1_000, "reference": "free money"}
        for path in ("/deposits", "/withdrawals"):
            response = await world.client.post(base + path, json=body, headers=carol | key())
            assert response.status_code == 403, path
        assert (await world.client.post(f"{base}/freeze", headers=carol)).status_code == 403
        assert (await world.balance(wallet["id"]))["posted"] == 0

    async def test_hostile_amounts_are_4xx(self, world: World) -> None:
        carol = await world.customer("carol")
        wallet = await world.open(carol)
        path = f"/v1/wallets/{wallet['id']}/deposits"
        headers = world.staff("finance") | {"content-type": "application/json"}
        amounts = ["-5", "0", "10.0", str(2**63), '"100"', "null", "1e400", "true", "[]"]
        for amount in amounts:
            body = f'{{"amount": {amount}, "reference": "r"}}'
            response = await world.client.post(path, content=body, headers=headers | key())
            assert 400 <= response.status_code < 500, (amount, response.text)
        for reference in ("", "a\u0000b", "x" * 300, 7):
            response = await world.client.post(
                path, json={"amount": 1, "reference": reference}, headers=headers | key()
            )
            assert 400 <= response.status_code < 500, (reference, response.text)
        assert (await world.balance(wallet["id"]))["posted"] == 0

    async def test_bad_ids_are_4xx(self, world: World) -> None:
        carol = await world.customer("carol")
        for wallet_id in ("nope", "wal_" + "x" * 80, "a%00b", "..", "wal-1;drop", "%ff"):
            response = await world.client.get(f"/v1/wallets/{wallet_id}", headers=carol)
            assert response.status_code in (400, 404, 422), (wallet_id, response.text)
            hold = await world.hold(carol, wallet_id, 100)
            assert hold.status_code in (400, 404, 422), (wallet_id, hold.text)


class TestValidation:
    async def test_masked_name_never_the_balance(self, world: World) -> None:
        carol = await world.customer("carol")
        dave = await world.customer("dave")
        wallet = await world.open(carol)
        await world.deposit(wallet["id"], 777)
        path = f"/v1/wallets/{wallet['id']}/validation"

        response = await world.client.get(path, params={"currency": "USD"}, headers=dave)
        body = response.json()
        assert response.status_code == 200, response.text
        assert body["exists"] and body["active"] and body["can_receive"]
        assert body["holder_name"] is None  # no profiles service in this platform
        assert "777" not in response.text and "balance" not in body

        class Profiles:
            async def legal_name(self, user_id: str) -> str | None:
                return "Jane Doe" if user_id == world.users["carol"] else None

        world.platform.runtimes["wallets"].state["wallets"].holders = Profiles()
        masked = await world.client.get(path, params={"currency": "EUR"}, headers=dave)
        assert masked.json()["holder_name"] == "J*** D***"
        assert masked.json()["can_receive"] is False

        missing = await world.client.get("/v1/wallets/wal_missing/validation", headers=dave)
        assert missing.json()["exists"] is False
        bad = await world.client.get(path, params={"currency": "ZZZ"}, headers=dave)
        assert bad.status_code == 422
