"""One contract for every event bus (kernel/events.py `EventBus`), run on the in-process
bus, on the real RabbitMQ and NATS JetStream servers and on a Kafka-protocol broker
(`PAYMESH_TEST_KAFKA_URL`, else Tansu started by the `kafka_url` fixture) through
kernel/brokers.py: delivery with
the consumer's patterns, in order; a failed delivery comes again; replicas of a consumer
share its events; publishing waits for the broker's confirmation and fails when the broker
cannot take the event. Each test uses its own event source and consumer names, and
removes the queues and streams it made. In CI a missing broker fails the run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from paymesh.kernel.brokers import BrokerBus, KafkaBus, NatsBus, RabbitBus, broker_bus
from paymesh.kernel.events import CloudEvent, EventBus, InProcessBus

RABBIT_URL = os.environ.get("PAYMESH_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("PAYMESH_TEST_NATS_URL", "nats://127.0.0.1:4222")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BUSES = ["in_process", "rabbitmq", "nats", "kafka"]
KAFKA_SESSION_SECONDS = 6.0  # Kafka's smallest session timeout by default
ROOT = Path(__file__).resolve().parents[2]


class Buses:
    """Makes buses of one kind, and cleans up what they declared on the broker."""

    def __init__(self, kind: str, url: str = "") -> None:
        self.kind = kind
        self.url = url
        self.made: list[EventBus] = []
        self.shared: InProcessBus | None = None
        self.source = f"t{uuid.uuid4().hex[:10]}"  # the event types' first word
        self.other_source = f"{self.source}b"  # a second service's events

    def new(self) -> EventBus:
        bus: EventBus
        if self.kind == "in_process":
            # Replicas of one process share its bus.
            self.shared = self.shared or InProcessBus()
            bus = self.shared
        elif self.kind == "rabbitmq":
            bus = RabbitBus(RABBIT_URL, redelivery_pause_seconds=0.05)
        elif self.kind == "kafka":
            bus = KafkaBus(
                self.url,
                redelivery_pause_seconds=0.05,
                known_sources=[self.source, self.other_source],
                session_timeout_seconds=KAFKA_SESSION_SECONDS,
            )
        else:
            bus = NatsBus(
                NATS_URL,
                redelivery_pause_seconds=0.05,
                known_sources=[self.source, self.other_source],
            )
        self.made.append(bus)
        return bus

    def event(self, name: str, number: int) -> CloudEvent:
        return CloudEvent(
            source=f"/{self.source}", type=f"{self.source}.{name}", data={"number": number}
        )

    async def close(self) -> None:
        for bus in reversed(self.made):
            await bus.stop()
        if self.kind == "rabbitmq":
            await _delete_rabbit_queues(self.made)
        elif self.kind == "nats":
            for source in (self.source, self.other_source):
                await _delete_nats_stream(source)
        elif self.kind == "kafka":
            bus = KafkaBus(self.url)
            await _delete_kafka_topics(bus, [bus.topic(self.source), bus.topic(self.other_source)])


async def _delete_rabbit_queues(buses: list[EventBus]) -> None:
    from aio_pika import connect_robust

    names = {
        f"paymesh.{subscription.name}"
        for bus in buses
        if isinstance(bus, RabbitBus)
        for subscription in bus.subscriptions
    }
    connection = await connect_robust(RABBIT_URL)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


async def _delete_nats_stream(source: str) -> None:
    import nats

    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().delete_stream(f"paymesh-{source}")
    except Exception:
        pass  # no event of this source was published
    finally:
        await client.close()


async def _delete_kafka_topics(bus: KafkaBus, topics: list[str]) -> None:
    """Delete those of `topics` that exist (events of a source never published made none)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bus.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if doomed := [topic for topic in topics if topic in existing]:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def _reachable(kind: str) -> bool:
    host, port = ("127.0.0.1", 5672) if kind == "rabbitmq" else ("127.0.0.1", 4222)
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


@pytest.fixture(params=BUSES)
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[Buses]:
    kind: str = request.param
    url = ""
    if kind == "kafka":
        url = request.getfixturevalue("kafka_url")
    elif kind != "in_process" and not await _reachable(kind):
        if IN_CI:
            pytest.fail(f"{kind} is required in CI")
        pytest.skip(f"{kind} is not reachable")
    made = Buses(kind, url)
    yield made
    await made.close()


class Recorder:
    def __init__(self) -> None:
        self.events: list[CloudEvent] = []
        self.arrived = asyncio.Event()

    async def __call__(self, event: CloudEvent) -> None:
        self.events.append(event)
        self.arrived.set()

    async def wait_for(self, count: int, within: float = 15.0) -> list[CloudEvent]:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


def numbers(events: list[CloudEvent]) -> list[int]:
    return [event.data["number"] for event in events]


async def test_events_reach_the_consumers_whose_patterns_match_in_order(buses: Buses) -> None:
    bus = buses.new()
    paid, everything = Recorder(), Recorder()
    bus.subscribe(f"{buses.source}.paid", [f"{buses.source}.payment.*"], paid)
    bus.subscribe(f"{buses.source}.all", [f"{buses.source}.*"], everything)
    await bus.start()

    await bus.publish_batch(
        [
            buses.event("payment.succeeded", 1),
            buses.event("refund.created", 2),
            buses.event("payment.failed", 3),
        ]
    )
    await bus.publish(buses.event("payment.succeeded", 4))

    assert numbers(await paid.wait_for(3)) == [1, 3, 4]
    assert numbers(await everything.wait_for(4)) == [1, 2, 3, 4]
    await asyncio.sleep(0.2)
    assert len(paid.events) == 3  # nothing else came


async def test_a_consumer_of_every_event_gets_every_services_events(buses: Buses) -> None:
    """Audit's pattern is `*`: on NATS that means every known service's stream."""
    bus = buses.new()
    everything = Recorder()
    bus.subscribe(f"{buses.source}.every", ["*"], everything)
    await bus.start()
    other = CloudEvent(source="/other", type=f"{buses.other_source}.thing.done", data={"number": 2})
    await bus.publish_batch([buses.event("thing.done", 1), other])

    async with asyncio.timeout(15):
        while len(ours := [e for e in everything.events if e.type.startswith(buses.source)]) < 2:
            everything.arrived.clear()
            await everything.arrived.wait()
    # Other tests' events may come too (a RabbitMQ queue bound to `#` gets them all).
    assert sorted(numbers(ours)) == [1, 2]


async def test_a_failed_delivery_comes_again(buses: Buses) -> None:
    bus = buses.new()
    failures = 2
    handled: list[int] = []

    async def flaky(event: CloudEvent) -> None:
        nonlocal failures
        if failures > 0:
            failures -= 1
            raise RuntimeError("the consumer's database is down")
        handled.append(event.data["number"])

    bus.subscribe(f"{buses.source}.flaky", [f"{buses.source}.*"], flaky)
    await bus.start()
    if buses.kind == "in_process":
        # In one process the relay is the retry: the failure reaches the publisher,
        # which keeps the outbox row for its next run.
        with pytest.raises(RuntimeError):
            await bus.publish(buses.event("happened", 7))
        with pytest.raises(RuntimeError):
            await bus.publish(buses.event("happened", 7))
        await bus.publish(buses.event("happened", 7))
    else:
        await bus.publish(buses.event("happened", 7))

    async with asyncio.timeout(15):
        while not handled:  # noqa: ASYNC110 - polls what the handler appends
            await asyncio.sleep(0.02)
    assert handled == [7]


async def test_replicas_of_a_consumer_share_its_events(buses: Buses) -> None:
    first, second = buses.new(), buses.new()
    one, other = Recorder(), Recorder()
    name = f"{buses.source}.shared"
    first.subscribe(name, [f"{buses.source}.*"], one)
    if second is not first:
        second.subscribe(name, [f"{buses.source}.*"], other)
    await first.start()
    if second is not first:
        await second.start()

    await first.publish_batch([buses.event("happened", number) for number in range(20)])

    async with asyncio.timeout(15):
        while len(one.events) + len(other.events) < 20:  # noqa: ASYNC110 - two recorders
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    assert sorted(numbers(one.events) + numbers(other.events)) == list(range(20))


async def test_a_publish_made_before_start_waits_for_it(buses: Buses) -> None:
    bus = buses.new()
    recorder = Recorder()
    bus.subscribe(f"{buses.source}.early", [f"{buses.source}.*"], recorder)
    publishing = asyncio.create_task(bus.publish(buses.event("happened", 1)))
    await asyncio.sleep(0.05)
    await bus.start()
    await publishing
    assert numbers(await recorder.wait_for(1)) == [1]


async def test_an_event_before_any_consumer_waits_for_it(buses: Buses) -> None:
    """A durable queue (RabbitMQ) or stream (NATS) keeps events for a consumer that
    subscribed before and is not running now: here, one that was stopped."""
    if buses.kind == "in_process":
        pytest.skip("in one process, consumers run whenever the publisher does")
    name = f"{buses.source}.later"
    before = buses.new()
    before.subscribe(name, [f"{buses.source}.*"], Recorder())
    await before.start()
    await before.stop()

    publisher = buses.new()
    await publisher.start()
    await publisher.publish(buses.event("happened", 5))

    after = buses.new()
    recorder = Recorder()
    after.subscribe(name, [f"{buses.source}.*"], recorder)
    await after.start()
    assert numbers(await recorder.wait_for(1)) == [5]


async def test_an_event_held_by_a_killed_consumer_is_delivered_again(buses: Buses) -> None:
    """A consumer process takes the event and is SIGKILLed before acknowledging it: the
    broker hands the event to the consumer's next instance."""
    if buses.kind == "in_process":
        pytest.skip("in one process, a killed consumer is a killed publisher: the outbox row stays")
    name, pattern = f"{buses.source}.held", f"{buses.source}.*"
    url = {"rabbitmq": RABBIT_URL, "nats": NATS_URL}.get(buses.kind, buses.url)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.kernel.broker_consumer",
        buses.kind,
        url,
        name,
        pattern,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            assert (await process.stdout.readline()).strip() == b"ready"
            publisher = buses.new()
            await publisher.start()
            event = buses.event("happened", 9)
            await publisher.publish(event)
            assert (await process.stdout.readline()).decode().split() == ["got", event.id]
    finally:
        process.kill()  # SIGKILL: no goodbye to the broker
        await process.wait()

    again: EventBus = (
        NatsBus(NATS_URL, unacked_redelivery_seconds=2)  # as the killed one declared it
        if buses.kind == "nats"
        else buses.new()
    )
    if again not in buses.made:
        buses.made.append(again)
    recorder = Recorder()
    again.subscribe(name, [pattern], recorder)
    await again.start()
    [redelivered] = await recorder.wait_for(1, within=20)
    assert redelivered.id == event.id


async def test_a_slow_consumer_leaves_the_backlog_in_the_broker(buses: Buses) -> None:
    """Back-pressure: while a consumer is stuck on one event, at most `prefetch` of the
    others are handed to its process; the rest wait in the broker, not in memory."""
    if buses.kind in ("in_process", "kafka"):
        pytest.skip(
            "in one process the publisher waits for the consumer; Kafka's consumer reads "
            "ahead by bytes (fetch_max_bytes), which the broker does not report"
        )
    bus = buses.new()
    assert isinstance(bus, RabbitBus | NatsBus)
    release = asyncio.Event()
    seen: list[int] = []

    async def stuck(event: CloudEvent) -> None:
        seen.append(event.data["number"])
        await release.wait()

    name = f"{buses.source}.slow"
    bus.subscribe(name, [f"{buses.source}.*"], stuck)
    await bus.start()
    await bus.publish_batch([buses.event("happened", number) for number in range(200)])
    async with asyncio.timeout(15):
        while not seen:  # noqa: ASYNC110 - polls what the handler appends
            await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)  # time for a client that reads ahead to do so
    waiting, handed_over = await _broker_backlog(bus, name, buses.source)
    assert seen == [0]
    assert handed_over <= bus.prefetch, handed_over
    assert waiting >= 200 - bus.prefetch - 1, waiting
    release.set()


async def _broker_backlog(bus: BrokerBus, consumer: str, source: str) -> tuple[int, int]:
    """(messages waiting in the broker, messages handed to the consumer not yet acked)."""
    if isinstance(bus, RabbitBus):
        from aio_pika import connect_robust

        connection = await connect_robust(RABBIT_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"{bus.namespace}.{consumer}", passive=True)
            ready = queue.declaration_result.message_count or 0
            return ready, 200 - ready - 1
    import nats

    client = await nats.connect(NATS_URL)
    try:
        durable = f"{bus.namespace}-{consumer}-{source}".replace(".", "-")
        info = await client.jetstream().consumer_info(f"{bus.namespace}-{source}", durable)
        return info.num_pending, info.num_ack_pending
    finally:
        await client.close()


async def test_a_message_no_consumer_can_read_goes_to_the_dead_letters(buses: Buses) -> None:
    """Bytes that are not a CloudEvent are neither redelivered forever nor dropped: the bus
    moves them, with the consumer's name and the reason, to `<namespace>.dead-letters`."""
    if buses.kind == "in_process":
        pytest.skip("in one process, only CloudEvents are ever published")
    namespace = f"t{uuid.uuid4().hex[:10]}"
    bus = _bus_in(buses, namespace)
    recorder = Recorder()
    consumer = f"{buses.source}.strict"
    bus.subscribe(consumer, [f"{buses.source}.*"], recorder)
    await bus.start()
    garbage = b"\x00{not json"
    try:
        await _publish_raw(bus, f"{buses.source}.happened", garbage)
        await bus.publish(buses.event("happened", 3))
        assert numbers(await recorder.wait_for(1)) == [3]
        body, headers = await _read_dead_letter(bus, consumer)
        assert body == garbage
        assert headers["paymesh-consumer"] == consumer
        assert headers["paymesh-reason"].startswith("not a CloudEvent")
        await asyncio.sleep(0.2)
        assert numbers(recorder.events) == [3]  # the garbage never reached the consumer
    finally:
        await bus.stop()
        await _remove_namespace(bus, buses.source, consumer)


def _bus_in(buses: Buses, namespace: str) -> BrokerBus:
    if buses.kind == "rabbitmq":
        return RabbitBus(RABBIT_URL, namespace=namespace)
    if buses.kind == "nats":
        return NatsBus(NATS_URL, namespace=namespace)
    return KafkaBus(buses.url, namespace=namespace, session_timeout_seconds=KAFKA_SESSION_SECONDS)


async def _publish_raw(bus: BrokerBus, event_type: str, body: bytes) -> None:
    """Bytes on the bus's own transport, as a foreign publisher would send them."""
    broker: Any = bus._broker
    source = event_type.split(".", 1)[0]
    if isinstance(bus, RabbitBus):
        await broker.publish(body, exchange=bus._exchange, routing_key=event_type, persist=True)
    elif isinstance(bus, NatsBus):
        await broker.publish(
            body, f"{bus.subject_root}.{event_type}", stream=f"{bus.namespace}-{source}"
        )
    else:
        assert isinstance(bus, KafkaBus)
        await broker.publish(body, bus.topic(source), key=b"foreign")


async def _read_dead_letter(bus: BrokerBus, consumer: str) -> tuple[bytes, dict[str, str]]:
    async with asyncio.timeout(20):
        if isinstance(bus, RabbitBus):
            from aio_pika import connect_robust

            connection = await connect_robust(RABBIT_URL)
            async with connection:
                channel = await connection.channel()
                while True:
                    try:
                        queue = await channel.get_queue(bus.dead_letters, ensure=True)
                    except Exception:
                        channel = await connection.channel()  # not declared yet
                        await asyncio.sleep(0.1)
                        continue
                    message = await queue.get(no_ack=True, fail=False)
                    if message is None:
                        await asyncio.sleep(0.1)
                        continue
                    headers = {k: str(v) for k, v in (message.headers or {}).items()}
                    return message.body, headers
        if isinstance(bus, NatsBus):
            import nats

            client = await nats.connect(NATS_URL)
            try:
                while True:
                    try:
                        subscription = await client.jetstream().pull_subscribe(
                            f"{bus.dead_letters}.{consumer}", stream=f"{bus.namespace}-dead-letters"
                        )
                        [message] = await subscription.fetch(1, timeout=2)
                    except Exception:
                        await asyncio.sleep(0.1)
                        continue
                    return message.data, dict(message.headers or {})
            finally:
                await client.close()
        from aiokafka import AIOKafkaConsumer

        assert isinstance(bus, KafkaBus)
        reader = AIOKafkaConsumer(
            bus.dead_letters, bootstrap_servers=bus.bootstrap_servers, auto_offset_reset="earliest"
        )
        await reader.start()
        try:
            record = await reader.getone()
            return record.value, {k: v.decode() for k, v in record.headers}
        finally:
            await reader.stop()


async def _remove_namespace(bus: BrokerBus, source: str, consumer: str) -> None:
    if isinstance(bus, RabbitBus):
        from aio_pika import connect_robust

        connection = await connect_robust(RABBIT_URL)
        async with connection:
            channel = await connection.channel()
            for queue in (f"{bus.namespace}.{consumer}", bus.dead_letters):
                await channel.queue_delete(queue)
            await channel.exchange_delete(bus.subject_root)
    elif isinstance(bus, NatsBus):
        import nats

        client = await nats.connect(NATS_URL)
        try:
            for stream in (f"{bus.namespace}-{source}", f"{bus.namespace}-dead-letters"):
                with contextlib.suppress(Exception):
                    await client.jetstream().delete_stream(stream)
        finally:
            await client.close()
    else:
        assert isinstance(bus, KafkaBus)
        await _delete_kafka_topics(bus, [bus.topic(source), bus.dead_letters])


@pytest.mark.parametrize(
    "make",
    [
        lambda: RabbitBus("amqp://guest:guest@127.0.0.1:1/", start_timeout_seconds=2),
        lambda: NatsBus("nats://127.0.0.1:1", start_timeout_seconds=2),
        lambda: KafkaBus("kafka://127.0.0.1:1", start_timeout_seconds=2),
    ],
    ids=["rabbitmq", "nats", "kafka"],
)
async def test_a_broker_that_is_down_fails_the_start_not_silently(
    make: Callable[[], Any],
) -> None:
    bus = make()
    with pytest.raises(Exception):  # noqa: B017 - each client raises its own error
        await bus.start()
    with pytest.raises(RuntimeError, match="not started"):
        await _publish_without_waiting(bus)


async def _publish_without_waiting(bus: Any) -> None:
    bus_module = __import__("paymesh.kernel.brokers", fromlist=["START_WAIT_SECONDS"])
    saved = bus_module.START_WAIT_SECONDS
    bus_module.START_WAIT_SECONDS = 0.05
    try:
        await bus.publish(CloudEvent(source="/t", type="t.happened", data={}))
    finally:
        bus_module.START_WAIT_SECONDS = saved


def test_the_url_scheme_chooses_the_bus() -> None:
    assert isinstance(broker_bus("amqp://guest:guest@host:5672/"), RabbitBus)
    assert isinstance(broker_bus("nats://host:4222"), NatsBus)
    kafka = broker_bus("kafka://one:9092,two?partitions=6&replication_factor=3")
    assert isinstance(kafka, KafkaBus)
    assert kafka.bootstrap_servers == ["one:9092", "two:9092"]
    assert (kafka.partitions, kafka.replication_factor) == (6, 3)
    with pytest.raises(ValueError, match="unknown Kafka option"):
        broker_bus("kafka://host:9092?acks=0")
    for bad in ("0", "-1", "x", "", "1001"):
        with pytest.raises(ValueError, match="whole number"):
            broker_bus(f"kafka://host:9092?partitions={bad}")
    with pytest.raises(ValueError, match="unknown scheme"):
        broker_bus("mqtt://host")
