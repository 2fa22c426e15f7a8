"""Audit's group commit: `append_many` writes exactly the records `append` would, and a
relay batch through the bus is recorded in one transaction, with the inbox's dedupe and
the per-event fallback (retries, dead letter) when one event of the batch cannot be recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, select

from paymesh.audit.models import AuditRecord, kernel_tables
from paymesh.audit.trail import AuditTrail
from paymesh.kernel.events import CloudEvent
from paymesh.platform import Platform

FIXED = dt.datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=dt.UTC)
SOURCES = ("payments", "wallets", "ledger")


def event(number: int, source: str | None = None, **extra: Any) -> CloudEvent:
    source = source or SOURCES[number % len(SOURCES)]
    return CloudEvent(
        source=f"/paymesh/{source}",
        type=f"{source}.thing.happened",
        subject=f"res_{number}",
        time=FIXED - dt.timedelta(seconds=100 - number),
        data={
            "amount_minor": number * 100,
            "card_number": "4111 1111 1111 1111",
            "payer_email": "jane.doe@example.com",
            "huge": 2**60,
        },
        actor="usr_1",
        actorroles="admin auditor",
        requestid=f"req_{number}",
        **extra,
    )


COLUMNS = [column.name for column in AuditRecord.__table__.columns if column.name != "id"]


async def rows(platform: Platform) -> list[dict[str, Any]]:
    """Every record's columns but its random id, by chain and seq."""
    runtime = platform.runtimes["audit"]
    async with runtime.database.transaction(read_only=True) as session:
        result = await session.execute(
            select(AuditRecord.__table__).order_by(AuditRecord.chain, AuditRecord.seq)
        )
        return [{name: row._mapping[name] for name in COLUMNS} for row in result]


async def dead_letters(platform: Platform) -> list[dict[str, Any]]:
    runtime = platform.runtimes["audit"]
    async with runtime.database.transaction(read_only=True) as session:
        result = await session.execute(select(kernel_tables.dead_letter))
        return [dict(row._mapping) for row in result]


@pytest.fixture
async def platform(make_platform: Callable[..., Any]) -> Platform:
    made: Platform = await make_platform(["audit"], run_workers=False)
    return made


class TestAppendMany:
    async def test_records_equal_those_of_append_and_verify(self, platform: Platform) -> None:
        runtime = platform.runtimes["audit"]
        trail = AuditTrail(clock=lambda: FIXED)
        events = [event(number) for number in range(12)]
        async with runtime.database.transaction() as session:
            for item in events:
                await trail.append(session, item)
        one_by_one = await rows(platform)
        assert (await trail.verify(runtime.database)).ok
        async with runtime.database.transaction() as session:
            await session.execute(delete(AuditRecord))

        # The first two singly, the rest as two batches: chains continue across both ways.
        async with runtime.database.transaction() as session:
            for item in events[:2]:
                await trail.append(session, item)
            await trail.append_many(session, events[2:7])
        async with runtime.database.transaction() as session:
            await trail.append_many(session, events[7:])
        grouped = await rows(platform)

        assert grouped == one_by_one
        assert [(row["chain"], row["seq"]) for row in grouped] == [
            (chain, seq) for chain in sorted(SOURCES) for seq in range(1, 5)
        ]
        verification = await trail.verify(runtime.database)
        assert verification.ok and verification.records == 12

    async def test_records_are_masked(self, platform: Platform) -> None:
        runtime = platform.runtimes["audit"]
        async with runtime.database.transaction() as session:
            await AuditTrail().append_many(session, [event(0), event(1)])

        for row in await rows(platform):
            assert row["data"]["card_number"] == "411111******1111"
            assert row["data"]["payer_email"] == "j***@example.com"
            assert row["data"]["huge"] == str(2**60)  # beyond 2^53: kept exact, as text

    async def test_an_empty_batch_writes_nothing(self, platform: Platform) -> None:
        runtime = platform.runtimes["audit"]
        async with runtime.database.transaction() as session:
            await AuditTrail().append_many(session, [])

        assert await rows(platform) == []


class TestThroughTheBus:
    async def test_a_batch_is_recorded_in_order_per_chain(self, platform: Platform) -> None:
        events = [event(number) for number in range(30)]

        await platform.bus.publish_batch(events)

        recorded = await rows(platform)
        for source in SOURCES:
            chain = [row for row in recorded if row["chain"] == source]
            expected = [item.id for item in events if item.source == f"/paymesh/{source}"]
            assert [row["event_id"] for row in chain] == expected
            assert [row["seq"] for row in chain] == list(range(1, 11))
        runtime = platform.runtimes["audit"]
        assert (await runtime.state["trail"].verify(runtime.database)).ok

    async def test_dedupe_inside_a_batch_and_against_single_deliveries(
        self, platform: Platform
    ) -> None:
        first, second, third = event(0, "payments"), event(1, "payments"), event(2, "payments")
        await platform.bus.publish(second)

        await platform.bus.publish_batch([first, second, third, first])
        await platform.bus.publish_batch([third, second])

        recorded = await rows(platform)
        assert [row["event_id"] for row in recorded] == [second.id, first.id, third.id]
        assert await dead_letters(platform) == []

    async def test_a_poison_event_is_dead_lettered_and_the_rest_recorded(
        self, platform: Platform
    ) -> None:
        runtime = platform.runtimes["audit"]
        poison = event(0, "payments")
        await platform.bus.publish(poison)
        # An event that slipped past the inbox (its inbox row lost): its record exists, so
        # recording it again breaks the unique event id, and with it any batch holding it.
        inbox = kernel_tables.inbox
        async with runtime.database.transaction() as session:
            await session.execute(delete(inbox).where(inbox.c.event_id == poison.id))
        before, after = event(1, "payments"), event(2, "payments")

        await platform.bus.publish_batch([before, poison, after])

        recorded = await rows(platform)
        assert [row["event_id"] for row in recorded] == [poison.id, before.id, after.id]
        assert [row["seq"] for row in recorded] == [1, 2, 3]
        [dead] = await dead_letters(platform)
        assert dead["event_id"] == poison.id
        assert dead["consumer"] == "audit.audit_trail"
        assert dead["attempts"] == platform.settings.events.max_attempts
        assert (await runtime.state["trail"].verify(runtime.database)).ok

    async def test_concurrent_batches_over_the_same_chains_all_land(
        self, platform: Platform
    ) -> None:
        # Each batch names the chains in a different order; locks are taken sorted.
        forward = [event(number) for number in range(0, 30)]
        backward = [event(number) for number in range(30, 60)][::-1]
        mixed = [event(number) for number in range(60, 90)]

        await asyncio.gather(*(platform.bus.publish_batch(b) for b in (forward, backward, mixed)))

        recorded = await rows(platform)
        assert len(recorded) == 90
        assert await dead_letters(platform) == []
        for source in SOURCES:
            assert [row["seq"] for row in recorded if row["chain"] == source] == list(range(1, 31))
        for batch in (forward, backward, mixed):
            for source in SOURCES:
                mine = {item.id for item in batch if item.source == f"/paymesh/{source}"}
                order = [row["event_id"] for row in recorded if row["event_id"] in mine]
                assert order == [item.id for item in batch if item.id in mine]
        runtime = platform.runtimes["audit"]
        assert (await runtime.state["trail"].verify(runtime.database)).ok
