"""Outbox, relay and consumers: at-least-once delivery, exactly-once effects, dead letters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import NoResultFound

from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.events import CloudEvent, OutboxRelay
from paymesh.platform import Platform
from tests.engine_statements import engine_statements
from tests.kernel.sample import app as sample_app
from tests.kernel.support import (
    NOTE,
    bearer,
    effect_count,
    effects_like,
    eventually,
    note_count,
    runtime_of,
    table_rows,
)

NOTES = "/v1/sample/notes"


async def create_note(client: httpx.AsyncClient, token: str, **changes: Any) -> dict[str, Any]:
    response = await client.post(NOTES, json={**NOTE, **changes}, headers=bearer(token))
    assert response.status_code == 201, response.text
    note: dict[str, Any] = response.json()
    return note


async def delivered(platform: Platform, note_id: str) -> int:
    return await eventually(lambda: effect_count(platform, f"note:{note_id}"), lambda n: n >= 1)


async def outbox_row(platform: Platform, event_id: str) -> dict[str, Any]:
    [row] = [row for row in await table_rows(platform, "outbox_event") if row["id"] == event_id]
    return row


class TestOutboxDelivery:
    async def test_an_event_committed_with_a_note_is_delivered(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        note = await create_note(client, admin_token)

        assert await delivered(sample, note["id"]) == 1
        [row] = await table_rows(sample, "outbox_event")
        published = await eventually(
            lambda: outbox_row(sample, row["id"]), lambda r: r["published_at"] is not None
        )
        assert published["subject"] == note["id"]

    async def test_an_event_from_a_rolled_back_transaction_is_never_delivered(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        rejected = await client.post(
            NOTES, json={**NOTE, "text": "rejected", "fail": True}, headers=bearer(admin_token)
        )
        assert rejected.status_code == 409
        # The relay publishes in commit order, so once this later note is delivered the
        # rejected one would have been too, had its event been committed.
        later = await create_note(client, admin_token, text="later")
        await delivered(sample, later["id"])

        assert await note_count(sample) == 1
        assert [row["subject"] for row in await table_rows(sample, "outbox_event")] == [later["id"]]
        assert await effects_like(sample, "note:") == {f"note:{later['id']}": 1}

    async def test_events_are_published_in_commit_order(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        seen: list[str] = []

        async def record(event: CloudEvent) -> None:
            seen.append(str(event.subject))

        sample.bus.subscribe("test.order", ["sample.note.created"], record)
        created = [(await create_note(client, admin_token, text=f"n{i}"))["id"] for i in range(5)]

        await eventually(lambda: _length(seen), lambda n: n >= 5)
        assert seen == created


async def _length(items: list[Any]) -> int:
    return len(items)


class TestCloudEventEnvelope:
    async def test_published_event_is_a_cloudevent_1_0(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        received: list[dict[str, Any]] = []

        async def capture(event: CloudEvent) -> None:
            received.append(event.model_dump(mode="json"))

        sample.bus.subscribe("test.capture", ["sample.*"], capture)
        before = utcnow()
        note = await create_note(client, admin_token)
        await eventually(lambda: _length(received), lambda n: n >= 1)

        [envelope] = received
        assert envelope["specversion"] == "1.0"
        assert envelope["id"].startswith("evt_")
        assert envelope["source"] == "/paymesh/sample"
        assert envelope["type"] == "sample.note.created"
        assert envelope["subject"] == note["id"]
        assert envelope["datacontenttype"] == "application/json"
        assert envelope["data"] == note
        time = dt.datetime.fromisoformat(envelope["time"])
        assert time.utcoffset() == dt.timedelta(0)
        assert before - dt.timedelta(seconds=1) <= time <= utcnow()

    async def test_the_outbox_stores_the_same_envelope(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        received: list[CloudEvent] = []

        async def capture(event: CloudEvent) -> None:
            received.append(event)

        sample.bus.subscribe("test.capture", ["sample.*"], capture)
        await create_note(client, admin_token)
        await eventually(lambda: _length(received), lambda n: n >= 1)

        [row] = await table_rows(sample, "outbox_event")
        assert row["id"] == received[0].id
        assert CloudEvent.model_validate(row["envelope"]) == received[0]


class TestConsumerRedelivery:
    async def test_the_same_event_delivered_twice_has_one_effect(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        consumer = runtime.consumers["count-notes"]
        event = runtime.outbox.event("sample.note.created", {"id": "note_twice"})

        await consumer(event)
        await consumer(event)

        assert await effect_count(idle_sample, "note:note_twice") == 1
        inbox = await table_rows(idle_sample, "inbox_event")
        assert [(row["event_id"], row["consumer"]) for row in inbox] == [
            (event.id, "sample.count-notes")
        ]

    async def test_each_consumer_has_its_own_inbox(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        event = runtime.outbox.event("sample.note.created", {"id": "note_both", "text": "x"})

        for _ in range(2):
            await runtime.consumers["count-notes"](event)
            await runtime.consumers["picky"](event)

        assert await effect_count(idle_sample, "note:note_both") == 1
        assert await effect_count(idle_sample, "picky:note_both") == 1

    async def test_a_republished_outbox_row_has_one_effect(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        note = await create_note(client, admin_token)
        await delivered(sample, note["id"])
        [row] = await table_rows(sample, "outbox_event")
        await eventually(
            lambda: outbox_row(sample, row["id"]), lambda r: r["published_at"] is not None
        )
        runtime = runtime_of(sample)
        table = runtime.tables.outbox
        async with runtime.database.transaction() as session:
            await session.execute(update(table).values(published_at=None, locked_until=None))
        runtime.relay.wake()

        republished = await eventually(
            lambda: outbox_row(sample, row["id"]), lambda r: r["published_at"] is not None
        )
        assert republished["attempts"] == 2
        assert await effect_count(sample, f"note:{note['id']}") == 1


class TestDeadLetters:
    async def test_a_poison_event_is_dead_lettered_after_max_attempts(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        note = await create_note(client, admin_token, text="poison")

        [dead] = await eventually(lambda: table_rows(sample, "dead_letter"), bool)
        assert dead["consumer"] == "sample.picky"
        assert dead["event_type"] == "sample.note.created"
        assert dead["envelope"]["subject"] == note["id"]
        assert dead["attempts"] == sample.settings.events.max_attempts
        assert "cannot digest this note" in dead["error"]
        assert dead["replayed_at"] is None
        assert await effect_count(sample, f"picky:{note['id']}") == 0

    async def test_other_consumers_still_process_a_poison_event(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        note = await create_note(client, admin_token, text="poison")

        await eventually(lambda: table_rows(sample, "dead_letter"), bool)
        assert await delivered(sample, note["id"]) == 1
        assert [row["consumer"] for row in await table_rows(sample, "dead_letter")] == [
            "sample.picky"
        ]

    async def test_a_dead_lettered_event_is_not_retried_on_redelivery(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        picky = runtime.consumers["picky"]
        event = runtime.outbox.event("sample.note.created", {"id": "note_p", "text": "poison"})

        await picky(event)
        await picky(event)

        assert len(await table_rows(idle_sample, "dead_letter")) == 1

    async def test_replay_runs_the_handler_again(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        note = await create_note(client, admin_token, text="poison")
        [dead] = await eventually(lambda: table_rows(sample, "dead_letter"), bool)
        sample_app.cured.add("poison")

        await runtime_of(sample).consumers["picky"].replay(dead["id"])

        assert await effect_count(sample, f"picky:{note['id']}") == 1
        [after] = await table_rows(sample, "dead_letter")
        assert after["replayed_at"] is not None

    async def test_a_replay_that_fails_again_is_dead_lettered_again(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        picky = runtime.consumers["picky"]
        event = runtime.outbox.event("sample.note.created", {"id": "note_q", "text": "poison"})
        await picky(event)
        [dead] = await table_rows(idle_sample, "dead_letter")

        await picky.replay(dead["id"])

        rows = await table_rows(idle_sample, "dead_letter")
        assert len(rows) == 2
        assert {row["event_id"] for row in rows} == {event.id}
        assert [row["id"] for row in rows if row["replayed_at"] is not None] == [dead["id"]]

    async def test_replay_of_another_consumers_dead_letter_is_refused(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        event = runtime.outbox.event("sample.note.created", {"id": "note_r", "text": "poison"})
        await runtime.consumers["picky"](event)
        [dead] = await table_rows(idle_sample, "dead_letter")

        with pytest.raises(NoResultFound):
            await runtime.consumers["count-notes"].replay(dead["id"])

        assert await effect_count(idle_sample, "note:note_r") == 0


class TestRelayLeases:
    async def _outbox_event(self, platform: Platform) -> CloudEvent:
        runtime = runtime_of(platform)
        async with runtime.database.transaction() as session:
            return await runtime.outbox.add(
                session, "sample.note.created", {"id": "note_lease", "text": "x"}
            )

    async def test_a_row_leased_by_a_dead_relay_is_published_by_another(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        event = await self._outbox_event(idle_sample)
        table = runtime.tables.outbox
        # A relay leased the row, counted an attempt, and died before publishing.
        async with runtime.database.transaction() as session:
            await session.execute(
                update(table).values(locked_until=utcnow() - dt.timedelta(seconds=1), attempts=1)
            )
        other_process = Database.for_service(idle_sample.settings, "sample")
        try:
            relay = OutboxRelay(
                other_process, runtime.tables, idle_sample.bus, retention_seconds=3600
            )
            assert await relay.run_once() == 1
        finally:
            await other_process.dispose()

        row = await outbox_row(idle_sample, event.id)
        assert row["published_at"] is not None
        assert row["attempts"] == 2
        assert await effect_count(idle_sample, "note:note_lease") == 1

    async def test_a_row_under_a_live_lease_is_left_alone(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        event = await self._outbox_event(idle_sample)
        table = runtime.tables.outbox
        async with runtime.database.transaction() as session:
            await session.execute(
                update(table).values(locked_until=utcnow() + dt.timedelta(seconds=30))
            )

        assert await runtime.relay.run_once() == 0

        row = await outbox_row(idle_sample, event.id)
        assert row["published_at"] is None
        assert await effect_count(idle_sample, "note:note_lease") == 0

    async def test_a_failed_publish_releases_the_row_for_the_next_run(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        event = await self._outbox_event(idle_sample)
        failures = ["bus down"]

        async def flaky_bus(_event: CloudEvent) -> None:
            if failures:
                raise ConnectionError(failures.pop())

        idle_sample.bus.subscribe("test.flaky", ["sample.*"], flaky_bus)
        with pytest.raises(ConnectionError):
            await runtime.relay.run_once()
        failed = await outbox_row(idle_sample, event.id)

        assert failed["published_at"] is None
        assert failed["locked_until"] is None
        assert "bus down" in failed["last_error"]
        assert await runtime.relay.run_once() == 1
        assert (await outbox_row(idle_sample, event.id))["published_at"] is not None

    async def test_a_run_with_nothing_due_opens_no_transaction(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        event = await self._outbox_event(idle_sample)
        async with runtime.database.transaction() as session:  # leased by a live relay
            await session.execute(
                update(runtime.tables.outbox).values(
                    locked_until=utcnow() + dt.timedelta(seconds=30)
                )
            )
        with engine_statements(runtime.database) as statements:
            assert await runtime.relay.run_once() == 0

        # Only the direct read asked: no lease's transaction (BEGIN, UPDATE, COMMIT).
        assert statements == []
        assert (await outbox_row(idle_sample, event.id))["published_at"] is None

    async def test_a_run_woken_by_a_commit_claims_without_asking_first(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        with engine_statements(runtime.database) as statements:
            assert await runtime.relay.run_once(due_known=True) == 0

        # Straight to the lease's statement: the check is skipped when a wake said "due".
        assert any(statement.startswith("UPDATE outbox_event") for statement in statements)

    async def test_run_once_publishes_nothing_twice(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        await self._outbox_event(idle_sample)

        assert await runtime.relay.run_once() == 1
        assert await runtime.relay.run_once() == 0
        async with runtime.database.transaction() as session:
            inbox = runtime.tables.inbox
            consumers = (await session.execute(select(inbox.c.consumer))).scalars().all()
        assert sorted(consumers) == ["sample.count-notes", "sample.picky"]


class TestPublishedEventRetention:
    async def test_with_retention_zero_a_published_event_is_deleted(
        self, make_platform: Any, settings: Any
    ) -> None:
        deleting = settings.model_copy(
            update={"events": settings.events.model_copy(update={"outbox_retention_seconds": 0})}
        )
        platform: Platform = await make_platform(
            specs=[sample_app.SPEC], settings_override=deleting
        )
        from tests.conftest import http_client

        token = platform.tokens.issue("usr_admin", roles=["admin"])
        async with http_client(platform) as client:
            note = await create_note(client, token)
        assert await delivered(platform, note["id"]) == 1
        assert (
            await eventually(lambda: table_rows(platform, "outbox_event"), lambda r: r == []) == []
        )

    async def test_with_retention_a_published_event_is_kept_and_marked(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        assert runtime_of(sample).relay.retention_seconds > 0
        note = await create_note(client, admin_token)
        await delivered(sample, note["id"])
        [row] = await table_rows(sample, "outbox_event")
        marked = await eventually(
            lambda: outbox_row(sample, row["id"]), lambda r: r["published_at"] is not None
        )
        assert marked["subject"] == note["id"]
