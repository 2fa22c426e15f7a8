"""Events the ledger writes to its outbox, in the same transaction as the change."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from sqlalchemy import select

from paymesh.platform import Platform
from tests.ledger.factories import (
    assert_problem,
    assert_status,
    batch,
    client_for,
    create_account,
    post_pending,
    post_transfer,
    transfer,
    transfer_body,
    void_pending,
)


async def outbox_events(platform: Platform, subject: str | None = None) -> list[dict[str, Any]]:
    """The CloudEvents in the ledger's outbox table, oldest first, optionally of one subject."""
    runtime = platform.runtimes["ledger"]
    table = runtime.tables.outbox
    query = select(table.c.type, table.c.subject, table.c.envelope).order_by(
        table.c.created_at, table.c.id
    )
    if subject is not None:
        query = query.where(table.c.subject == subject)
    async with runtime.database.transaction() as session:
        rows = (await session.execute(query)).all()
    for row in rows:
        assert row.type == row.envelope["type"]
        assert row.subject == row.envelope["subject"]
    return [dict(row.envelope) for row in rows]


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


class TestAccountEvents:
    async def test_account_created(
        self, ledger_platform: Platform, ledger: httpx.AsyncClient
    ) -> None:
        account = await create_account(ledger, currency="EUR", code=5, metadata={"a": 1})

        (event,) = await outbox_events(ledger_platform, account["id"])

        assert event["type"] == "ledger.account.created"
        assert event["specversion"] == "1.0"
        assert event["source"] == "/paymesh/ledger"
        assert event["id"]
        assert event["time"]
        assert event["data"]["id"] == account["id"]
        assert event["data"]["currency"] == "EUR"
        assert event["data"]["code"] == 5

    async def test_repeating_the_creation_adds_no_event(
        self, ledger_platform: Platform, ledger: httpx.AsyncClient
    ) -> None:
        account = await create_account(ledger)
        body = {key: account[key] for key in ("id", "currency", "code", "flags", "metadata")}
        assert_status(await ledger.post("/v1/ledger/accounts", json=body), 200)

        assert _types(await outbox_events(ledger_platform, account["id"])) == [
            "ledger.account.created"
        ]


class TestTransferEvents:
    async def test_posted(self, ledger_platform: Platform, ledger: httpx.AsyncClient) -> None:
        debit = (await create_account(ledger))["id"]
        credit = (await create_account(ledger))["id"]
        created = await transfer(ledger, debit, credit, 420, metadata={"order": "o-9"})

        (event,) = await outbox_events(ledger_platform, created["id"])

        assert event["type"] == "ledger.transfer.posted"
        assert event["source"] == "/paymesh/ledger"
        data = event["data"]
        assert data["id"] == created["id"]
        assert data["debit_account_id"] == debit
        assert data["credit_account_id"] == credit
        assert data["amount"] == 420
        assert data["currency"] == "USD"
        assert data["status"] == "posted"
        assert data["metadata"] == {"order": "o-9"}

    async def test_pending_then_posted(
        self, ledger_platform: Platform, ledger: httpx.AsyncClient
    ) -> None:
        debit = (await create_account(ledger))["id"]
        credit = (await create_account(ledger))["id"]
        created = await transfer(ledger, debit, credit, 300, pending=True)
        assert_status(await post_pending(ledger, created["id"], 120), 200)

        events = await outbox_events(ledger_platform, created["id"])

        assert _types(events) == ["ledger.transfer.pending", "ledger.transfer.posted"]
        assert events[1]["data"]["posted_amount"] == 120

    async def test_pending_then_voided(
        self, ledger_platform: Platform, ledger: httpx.AsyncClient
    ) -> None:
        debit = (await create_account(ledger))["id"]
        credit = (await create_account(ledger))["id"]
        created = await transfer(ledger, debit, credit, 300, pending=True)
        assert_status(await void_pending(ledger, created["id"]), 200)
        assert_status(await void_pending(ledger, created["id"]), 200)  # a replay: no event

        events = await outbox_events(ledger_platform, created["id"])

        assert _types(events) == ["ledger.transfer.pending", "ledger.transfer.voided"]
        assert events[1]["data"]["status"] == "voided"

    async def test_replays_and_refusals_add_no_event(
        self, ledger_platform: Platform, ledger: httpx.AsyncClient
    ) -> None:
        debit = (await create_account(ledger))["id"]
        credit = (await create_account(ledger))["id"]
        body = transfer_body(debit, credit, 5)
        assert_status(await post_transfer(ledger, body), 201)
        assert_status(await post_transfer(ledger, body), 200)
        changed = await post_transfer(ledger, {**body, "amount": 6})
        assert_problem(changed, 409, "exists_with_different_fields")
        refused = transfer_body(debit, debit, 5)
        assert_problem(await post_transfer(ledger, refused), 422, "accounts_must_be_different")

        assert _types(await outbox_events(ledger_platform, body["id"])) == [
            "ledger.transfer.posted"
        ]
        assert await outbox_events(ledger_platform, refused["id"]) == []

    async def test_a_failed_atomic_batch_adds_no_event(
        self, ledger_platform: Platform, ledger: httpx.AsyncClient
    ) -> None:
        debit = (await create_account(ledger))["id"]
        credit = (await create_account(ledger))["id"]
        items = [transfer_body(debit, credit, 5), transfer_body(debit, credit, 0)]
        before = await outbox_events(ledger_platform)

        assert_status(await batch(ledger, items, atomic=True), 200)

        assert await outbox_events(ledger_platform) == before


class TestExpiryEvents:
    async def test_expired(self, expiring_platform: Platform) -> None:
        platform = expiring_platform
        async with client_for(platform) as client:
            debit = (await create_account(client))["id"]
            credit = (await create_account(client))["id"]
            created = await transfer(client, debit, credit, 9, pending=True, timeout_seconds=1)

        deadline = time.monotonic() + 15
        while len(events := await outbox_events(platform, created["id"])) < 2:
            assert time.monotonic() < deadline, events
            await asyncio.sleep(0.1)

        assert _types(events) == ["ledger.transfer.pending", "ledger.transfer.expired"]
        assert events[1]["data"]["status"] == "expired"
