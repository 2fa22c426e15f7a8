"""Group commit: a consumer with a batch handler takes a relay batch in one transaction,
deduplicates through its inbox exactly as one-by-one delivery does, and falls back to the
per-event path (retries, dead letter) when the batch transaction fails."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.events import (
    BatchEventHandler,
    CloudEvent,
    Consumer,
    EventBus,
    EventHandler,
)
from paymesh.platform import Platform
from tests.kernel.sample import app as sample_app
from tests.kernel.support import effect_count, effects_like, runtime_of, table_rows

MAX_ATTEMPTS = 3


class Recorder:
    """A consumer's handlers that count effects and remember what each call was given."""

    def __init__(self, fail_batches: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.singles: list[str] = []
        self.fail_batches = fail_batches

    async def one(self, session: AsyncSession, event: CloudEvent) -> None:
        self.singles.append(event.id)
        if event.data.get("text") == "poison":
            raise ValueError("cannot digest this note")
        await sample_app.count_effect(session, f"batch:{event.data['id']}")

    async def many(self, session: AsyncSession, events: Sequence[CloudEvent]) -> None:
        self.batches.append([event.id for event in events])
        for event in events:
            # Written before the failure: the rollback must take it back.
            await sample_app.count_effect(session, f"batch:{event.data['id']}")
        if self.fail_batches > 0:
            self.fail_batches -= 1
            raise ConnectionError("database went away mid-batch")
        if any(event.data.get("text") == "poison" for event in events):
            raise ValueError("cannot digest this note")


def consumer_of(platform: Platform, recorder: Recorder, *, batches: bool = True) -> Consumer:
    runtime = runtime_of(platform)
    return Consumer(
        "sample.batch-notes",
        runtime.database,
        runtime.tables,
        recorder.one,
        batch_handler=recorder.many if batches else None,
        max_attempts=MAX_ATTEMPTS,
        retry_base_seconds=0.001,
    )


def notes(platform: Platform, *texts: str) -> list[CloudEvent]:
    outbox = runtime_of(platform).outbox
    return [
        outbox.event("sample.note.created", {"id": f"n{number}", "text": text})
        for number, text in enumerate(texts)
    ]


async def inbox_ids(platform: Platform) -> list[str]:
    rows = await table_rows(platform, "inbox_event")
    return sorted(row["event_id"] for row in rows if row["consumer"] == "sample.batch-notes")


class TestHandleBatch:
    async def test_a_batch_is_handled_in_one_call_in_order(self, idle_sample: Platform) -> None:
        recorder = Recorder()
        events = notes(idle_sample, "a", "b", "c", "d")

        await consumer_of(idle_sample, recorder).handle_batch(events)

        assert recorder.batches == [[event.id for event in events]]
        assert recorder.singles == []
        assert await effects_like(idle_sample, "batch:") == {f"batch:n{i}": 1 for i in range(4)}
        assert await inbox_ids(idle_sample) == sorted(event.id for event in events)

    async def test_a_repeat_inside_a_batch_is_handled_once(self, idle_sample: Platform) -> None:
        recorder = Recorder()
        first, second = notes(idle_sample, "a", "b")

        await consumer_of(idle_sample, recorder).handle_batch([first, second, first])

        assert recorder.batches == [[first.id, second.id]]
        assert await effect_count(idle_sample, "batch:n0") == 1
        assert await effect_count(idle_sample, "batch:n1") == 1

    async def test_events_delivered_singly_before_are_skipped(self, idle_sample: Platform) -> None:
        recorder = Recorder()
        consumer = consumer_of(idle_sample, recorder)
        first, second, third = notes(idle_sample, "a", "b", "c")
        await consumer(second)

        await consumer.handle_batch([first, second, third])

        assert recorder.singles == [second.id]
        assert recorder.batches == [[first.id, third.id]]
        assert await effects_like(idle_sample, "batch:") == {f"batch:n{i}": 1 for i in range(3)}

    async def test_a_redelivered_batch_has_no_second_effect(self, idle_sample: Platform) -> None:
        recorder = Recorder()
        consumer = consumer_of(idle_sample, recorder)
        events = notes(idle_sample, "a", "b", "c")

        await consumer.handle_batch(events)
        await consumer.handle_batch(events)

        assert len(recorder.batches) == 1  # the second delivery found every id in the inbox
        assert await effects_like(idle_sample, "batch:") == {f"batch:n{i}": 1 for i in range(3)}

    async def test_without_a_batch_handler_each_event_goes_alone(
        self, idle_sample: Platform
    ) -> None:
        recorder = Recorder()
        events = notes(idle_sample, "a", "b")

        await consumer_of(idle_sample, recorder, batches=False).handle_batch(events)

        assert recorder.batches == []
        assert recorder.singles == [event.id for event in events]
        assert await inbox_ids(idle_sample) == sorted(event.id for event in events)


class TestBatchFailure:
    async def test_a_poison_event_is_retried_then_dead_lettered_and_others_recorded(
        self, idle_sample: Platform
    ) -> None:
        recorder = Recorder()
        events = notes(idle_sample, "a", "poison", "c")
        poison = events[1]

        await consumer_of(idle_sample, recorder).handle_batch(events)

        assert len(recorder.batches) == 1
        # Fallback in order: a, then poison MAX_ATTEMPTS times, then c.
        assert recorder.singles == [events[0].id] + [poison.id] * MAX_ATTEMPTS + [events[2].id]
        # The failed batch's writes were rolled back: each good note counts once.
        assert await effects_like(idle_sample, "batch:") == {"batch:n0": 1, "batch:n2": 1}
        [dead] = await table_rows(idle_sample, "dead_letter")
        assert (dead["event_id"], dead["consumer"]) == (poison.id, "sample.batch-notes")
        assert dead["attempts"] == MAX_ATTEMPTS
        assert "cannot digest this note" in dead["error"]
        assert await inbox_ids(idle_sample) == sorted(event.id for event in events)

    async def test_a_dead_lettered_event_in_a_later_batch_is_not_retried(
        self, idle_sample: Platform
    ) -> None:
        recorder = Recorder()
        consumer = consumer_of(idle_sample, recorder)
        events = notes(idle_sample, "a", "poison")
        await consumer.handle_batch(events)
        recorder.singles.clear()
        outbox = runtime_of(idle_sample).outbox
        later = outbox.event("sample.note.created", {"id": "n9", "text": "z"})

        await consumer.handle_batch([*events, later])

        assert recorder.batches[-1] == [later.id]
        assert recorder.singles == []
        assert len(await table_rows(idle_sample, "dead_letter")) == 1
        assert await effect_count(idle_sample, "batch:n9") == 1

    async def test_a_transient_batch_failure_falls_back_to_single_events(
        self, idle_sample: Platform
    ) -> None:
        recorder = Recorder(fail_batches=1)
        events = notes(idle_sample, "a", "b", "c")

        await consumer_of(idle_sample, recorder).handle_batch(events)

        assert recorder.singles == [event.id for event in events]
        assert await effects_like(idle_sample, "batch:") == {f"batch:n{i}": 1 for i in range(3)}
        assert await table_rows(idle_sample, "dead_letter") == []


class TestPublishBatch:
    async def test_each_subscriber_gets_its_matching_events_in_order(
        self, idle_sample: Platform
    ) -> None:
        recorder = Recorder()
        consumer = consumer_of(idle_sample, recorder)
        seen: list[str] = []

        async def one_by_one(event: CloudEvent) -> None:
            seen.append(event.id)

        idle_sample.bus.subscribe(consumer.name, ["sample.note.*"], consumer, consumer.handle_batch)
        idle_sample.bus.subscribe("test.plain", ["sample.*"], one_by_one)
        outbox = runtime_of(idle_sample).outbox
        events = [
            outbox.event("sample.note.created", {"id": "n0", "text": "a"}),
            outbox.event("sample.other.thing", {"id": "x"}),
            outbox.event("sample.note.updated", {"id": "n1", "text": "b"}),
            outbox.event("sample.note.created", {"id": "n2", "text": "c"}),
        ]

        await idle_sample.bus.publish_batch(events)

        assert seen == [event.id for event in events]
        assert recorder.batches == [[events[0].id, events[2].id, events[3].id]]

    async def test_the_relay_publishes_a_leased_batch_at_once(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        recorder = Recorder()
        consumer = consumer_of(idle_sample, recorder)
        idle_sample.bus.subscribe(consumer.name, ["sample.note.*"], consumer, consumer.handle_batch)
        written: list[CloudEvent] = []
        async with runtime.database.transaction() as session:
            for number in range(5):
                written.append(
                    await runtime.outbox.add(
                        session, "sample.note.created", {"id": f"r{number}", "text": "x"}
                    )
                )

        assert await runtime.relay.run_once() == 5

        assert recorder.batches == [[event.id for event in written]]  # commit order
        assert await effects_like(idle_sample, "batch:r") == {f"batch:r{i}": 1 for i in range(5)}
        # The sample's own (per-event) consumers got every event too.
        assert await effects_like(idle_sample, "note:r") == {f"note:r{i}": 1 for i in range(5)}
        published = await table_rows(idle_sample, "outbox_event")
        assert all(row["published_at"] is not None for row in published)

    async def test_a_bus_without_its_own_publish_batch_publishes_each(self) -> None:
        received: list[str] = []

        class OneByOneBus(EventBus):
            """An adapter that implements everything but `publish_batch`."""

            async def publish(self, event: CloudEvent) -> None:
                received.append(event.id)

            def wants(self, event_type: str) -> bool:
                return True

            def subscribe(
                self,
                name: str,
                patterns: Sequence[str],
                handler: EventHandler,
                batch_handler: BatchEventHandler | None = None,
            ) -> None:
                return None

            async def start(self) -> None:
                return None

            async def stop(self) -> None:
                return None

        events = [CloudEvent(source="/paymesh/sample", type="t", data={}) for _ in range(3)]
        await OneByOneBus().publish_batch(events)

        assert received == [event.id for event in events]
