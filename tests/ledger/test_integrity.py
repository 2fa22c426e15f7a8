"""Referential integrity without foreign keys: every transfer names existing accounts and
every entry an existing transfer and account, after a mix of operations that succeed and
fail (including an atomic batch that rolls back)."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from paymesh.platform import Platform
from tests.ledger.factories import unique_id

ORPHANS = {
    "transfers with a missing debit or credit account": """
        SELECT count(*) FROM ledger_transfer t
        WHERE NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.id = t.debit_account_id)
           OR NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.id = t.credit_account_id)""",
    "entries with a missing transfer": """
        SELECT count(*) FROM ledger_entry e
        WHERE NOT EXISTS (SELECT 1 FROM ledger_transfer t WHERE t.id = e.transfer_id)""",
    "entries with a missing account": """
        SELECT count(*) FROM ledger_entry e
        WHERE NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.id = e.account_id)""",
    "transfers without their entries": """
        SELECT count(*) FROM ledger_transfer t
        WHERE (SELECT count(*) FROM ledger_entry e WHERE e.transfer_id = t.id) < 2""",
}


class TestReferentialIntegrity:
    async def test_no_orphans_after_mixed_operations(
        self, ledger: httpx.AsyncClient, ledger_platform: Platform
    ) -> None:
        source, target = unique_id("acc"), unique_id("acc")
        for account in (source, target):
            response = await ledger.post(
                "/v1/ledger/accounts", json={"id": account, "currency": "EUR"}
            )
            assert response.status_code == 201, response.text

        def transfer(amount: int, **extra: object) -> dict[str, object]:
            return {
                "id": unique_id("txf"),
                "debit_account_id": source,
                "credit_account_id": target,
                "amount": amount,
                "currency": "EUR",
                **extra,
            }

        posted = await ledger.post("/v1/ledger/transfers", json=transfer(100))
        assert posted.status_code == 201
        missing = await ledger.post(
            "/v1/ledger/transfers", json={**transfer(5), "credit_account_id": unique_id("no")}
        )
        assert missing.status_code == 404
        pending = await ledger.post(
            "/v1/ledger/transfers", json=transfer(40, pending=True, timeout_seconds=60)
        )
        assert pending.status_code == 201
        voided = await ledger.post(f"/v1/ledger/transfers/{pending.json()['id']}/void")
        assert voided.status_code == 200
        batch = await ledger.post(
            "/v1/ledger/transfers/batch",
            json={
                "atomic": True,
                "transfers": [
                    transfer(7),
                    {**transfer(8), "debit_account_id": unique_id("missing")},
                ],
            },
        )
        assert [item["code"] for item in batch.json()["results"]] == [
            "linked_transfer_failed",
            "account_not_found",
        ]

        async with ledger_platform.runtimes["ledger"].database.transaction() as session:
            counts = {
                name: (await session.execute(text(query))).scalar_one()
                for name, query in ORPHANS.items()
            }
            transfers = (
                await session.execute(text("SELECT count(*) FROM ledger_transfer"))
            ).scalar_one()
        assert counts == {name: 0 for name in ORPHANS}
        assert transfers == 2
