"""Event buses on message brokers, for the distributed shape: RabbitMQ and NATS JetStream
through FastStream, chosen by the scheme of `PAYMESH_BROKER_URL` (`amqp://`, `nats://`).

They keep the in-process bus's contract (`kernel/events.py`, `EventBus`), so the outbox
relay and the consumers do not know which bus they run on:

- **Publishing is confirmed.** `publish_batch` returns once the broker has accepted every
  event (a RabbitMQ publisher confirm on a persistent message, a JetStream `PubAck`); only
  then does the relay mark the outbox rows sent. A broker that is down makes the publish
  raise: the rows wait in the outbox and the relay tries again, so nothing is lost.
- **Delivery is at least once.** A message is acknowledged after its consumer has handled
  it — the kernel's `Consumer`, which records the event in its inbox in the same
  transaction (a redelivery changes nothing), retries a failing handler and writes the
  event to the service's dead-letter table after `PAYMESH_EVENTS_MAX_ATTEMPTS`, where
  operators replay it. Only when that machinery itself fails (its database is down) does
  the message go back to the broker, after a pause, for a later delivery; a consumer
  process that dies mid-event leaves it unacknowledged, and the broker redelivers it.
- **Broker dead letters** hold what no consumer could ever take: a message that is not a
  CloudEvent is moved, with the consumer's name and the reason, to `<namespace>.dead-letters`
  (a RabbitMQ queue, a NATS stream of subjects `<namespace>.dead-letters.<consumer>`, a Kafka
  topic keyed by consumer) instead of being redelivered forever or dropped.
- **One queue (RabbitMQ) or durable consumer (NATS) per consumer name** (`service.consumer`),
  shared by every replica of that service: each event reaches one replica of each
  consuming service. Events are published under their type (`payments.payment.succeeded`):
  the broker routes by the consumer's patterns, and the consumer checks them again
  (fnmatch, as on the in-process bus).
- **Back-pressure**: each consumer has at most `prefetch` unacknowledged messages; the
  rest wait in the broker, not in this process's memory.
- **Order**: a consumer handles its messages one at a time, in the order the broker hands
  them over (per queue for RabbitMQ, per stream for NATS); a redelivery can come after
  later events, which the handlers tolerate (they are keyed by the event's subject).
- Batches: a broker hands over one message at a time, so consumers' batch handlers (the
  in-process bus's group commit) are not used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import structlog
from faststream import AckPolicy
from pydantic import ValidationError

from paymesh.kernel.events import BatchEventHandler, CloudEvent, EventHandler

log = structlog.get_logger("paymesh.brokers")

DEFAULT_NAMESPACE = "paymesh"
"""`PAYMESH_EVENTS_BROKER_NAMESPACE`: RabbitMQ's exchange is `<namespace>.events`, its
queues `<namespace>.<consumer>`; NATS subjects are `<namespace>.events.<event type>`, its
streams `<namespace>-<source service>`."""

START_WAIT_SECONDS = 30.0
"""How long a publish made before the bus has started waits for it."""


@dataclass
class BrokerSubscription:
    name: str
    patterns: tuple[str, ...]
    handler: EventHandler
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One delivery at a time, in arrival order: aio-pika runs RabbitMQ's deliveries (up to
    the prefetch) as concurrent tasks, which would handle them out of order."""

    def matches(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.patterns)


class BrokerBus:
    """What RabbitMQ's and NATS's buses share: subscriptions kept until `start`, publishes
    that wait for the start, and the delivery of one message to its consumer."""

    def __init__(
        self,
        url: str,
        *,
        prefetch: int = 32,
        redelivery_pause_seconds: float = 1.0,
        start_timeout_seconds: float = 15.0,
        namespace: str = DEFAULT_NAMESPACE,
        unacked_redelivery_seconds: float = 60.0,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.subject_root = f"{namespace}.events"
        self.start_timeout_seconds = start_timeout_seconds
        self.unacked_redelivery_seconds = unacked_redelivery_seconds
        """NATS: a message neither acknowledged nor refused within this long (its consumer
        died) goes to another. RabbitMQ redelivers when the dead consumer's connection
        closes."""
        self.prefetch = prefetch
        self.dead_letters = f"{namespace}.dead-letters"
        """Where messages no consumer can read go (see the module's docstring)."""
        self.redelivery_pause_seconds = redelivery_pause_seconds
        self.subscriptions: list[BrokerSubscription] = []
        self._started = asyncio.Event()
        self._broker: Any = None

    # --- EventBus ----------------------------------------------------------------------------

    async def publish(self, event: CloudEvent) -> None:
        await self.publish_batch([event])

    async def publish_batch(self, events: Sequence[CloudEvent]) -> None:
        await self._wait_started()
        for event in events:
            await self._send(event)

    def wants(self, event_type: str) -> bool:
        # Consumers live in other processes too: only the broker knows who subscribed.
        return True

    def subscribe(
        self,
        name: str,
        patterns: Sequence[str],
        handler: EventHandler,
        batch_handler: BatchEventHandler | None = None,
    ) -> None:
        if self._broker is not None:
            raise RuntimeError("subscribe before the bus starts")
        self.subscriptions.append(BrokerSubscription(name, tuple(patterns), handler))

    async def start(self) -> None:
        """Connect, declare, start consuming. A broker that cannot be reached fails the
        start (the process does not come up half-wired); once started, the clients
        reconnect by themselves after an outage, and publishes fail until they have."""
        self._broker = self._make_broker()
        for subscription in self.subscriptions:
            self._declare(subscription)
        try:
            async with asyncio.timeout(self.start_timeout_seconds):
                await self._before_start()
                await self._start_broker()
                await self._after_start()
        except BaseException:
            broker, self._broker = self._broker, None
            with contextlib.suppress(Exception):
                await broker.stop()
            raise
        self._started.set()

    async def stop(self) -> None:
        self._started.clear()
        if self._broker is not None:
            await self._broker.stop()
            self._broker = None

    async def ready(self) -> bool:
        """Whether the broker answers (for `/ready`)."""
        if self._broker is None or not self._started.is_set():
            return False
        try:
            return bool(await self._broker.ping(timeout=2.0))
        except Exception:
            return False

    # --- what each broker fills in -------------------------------------------------------

    def _make_broker(self) -> Any:
        raise NotImplementedError

    def _declare(self, subscription: BrokerSubscription) -> None:
        raise NotImplementedError

    async def _before_start(self) -> None:
        return None

    async def _start_broker(self) -> None:
        await self._broker.start()

    async def _after_start(self) -> None:
        return None

    async def _send(self, event: CloudEvent) -> None:
        raise NotImplementedError

    async def _dead_letter(self, consumer: str, body: bytes, reason: str) -> None:
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------

    async def _wait_started(self) -> None:
        if self._started.is_set():
            return
        try:
            async with asyncio.timeout(START_WAIT_SECONDS):
                await self._started.wait()
        except TimeoutError:
            raise RuntimeError("the event bus has not started") from None

    async def _deliver(self, subscription: BrokerSubscription, body: bytes) -> None:
        """Hand one message to its consumer; raising sends it back to the broker."""
        try:
            event = CloudEvent.model_validate_json(body)
        except ValidationError as error:
            # Not a CloudEvent of ours: redelivering it could never succeed. Kept where an
            # operator can read it; a failure to keep it sends the message back instead.
            reason = f"not a CloudEvent: {error.errors()[0]['msg']}"[:200]
            log.error(
                "broker_message_dead_lettered",
                consumer=subscription.name,
                size=len(body),
                reason=reason,
                destination=self.dead_letters,
            )
            await self._dead_letter(subscription.name, body, reason)
            return
        if not subscription.matches(event.type):
            return
        async with subscription.turn:  # a FIFO lock: waiters get it in arrival order
            try:
                await subscription.handler(event)
            except Exception as error:
                log.warning(
                    "broker_delivery_failed",
                    consumer=subscription.name,
                    event_id=event.id,
                    event_type=event.type,
                    error=repr(error),
                )
                await asyncio.sleep(self.redelivery_pause_seconds)
                raise


def _quiet_logger() -> logging.Logger:
    """FastStream logs every message received and processed at INFO: ours log what matters.
    Its warning that it will not create Kafka topics is dropped too: the Kafka bus makes
    them itself, with the partitions and replication it was given."""
    logger = logging.getLogger("paymesh.brokers.faststream")
    logger.setLevel(logging.WARNING)
    if not logger.filters:
        logger.addFilter(
            lambda record: not str(record.msg).startswith("Auto create topics is disabled")
        )
    return logger


class RabbitBus(BrokerBus):
    """A durable topic exchange `paymesh.events`; a durable queue per consumer, bound by
    its patterns; persistent messages with publisher confirms."""

    def _make_broker(self) -> Any:
        from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange
        from faststream.rabbit.schemas import Channel

        self._exchange = RabbitExchange(self.subject_root, type=ExchangeType.TOPIC, durable=True)
        self._extra_bindings: list[tuple[Any, str]] = []
        return RabbitBroker(
            self.url,
            logger=_quiet_logger(),
            default_channel=Channel(prefetch_count=self.prefetch, on_return_raises=False),
        )

    def _declare(self, subscription: BrokerSubscription) -> None:
        from faststream.rabbit import RabbitQueue
        from faststream.rabbit.annotations import RabbitMessage

        keys = sorted({_amqp_binding(pattern) for pattern in subscription.patterns})
        queue = RabbitQueue(
            f"{self.namespace}.{subscription.name}", durable=True, routing_key=keys[0]
        )
        self._extra_bindings.extend((queue, key) for key in keys[1:])

        async def deliver(message: RabbitMessage) -> None:
            await self._deliver(subscription, message.body)

        # FastStream reads the annotation to inject the raw message; this module imports
        # the broker clients only when a broker bus is used, so it gets the type itself.
        deliver.__annotations__ = {"message": RabbitMessage, "return": None}
        subscriber = self._broker.subscriber(
            queue, self._exchange, ack_policy=AckPolicy.NACK_ON_ERROR
        )
        subscriber(deliver)
        # aio-pika starts each delivery as a task of its own, and FastStream's pipeline
        # awaits several times before `deliver` takes the subscription's turn: under CPU
        # load a delivery overtook the one before it (2 handled before 1; the broker tests
        # failed about one run in sixteen). Each delivery now queues before its first await.
        subscriber.consume = _in_arrival_order(subscriber.consume)

    async def _after_start(self) -> None:
        exchange = await self._broker.declare_exchange(self._exchange)
        for queue, key in self._extra_bindings:
            declared = await self._broker.declare_queue(queue)
            await declared.bind(exchange, routing_key=key)

    async def _send(self, event: CloudEvent) -> None:
        confirmation = await self._broker.publish(
            event.model_dump_json().encode(),
            exchange=self._exchange,
            routing_key=event.type,
            persist=True,
            mandatory=False,
            content_type="application/cloudevents+json",
            message_id=event.id,
            timeout=10.0,
        )
        if confirmation is not None and confirmation.__class__.__name__ != "Ack":
            raise RuntimeError(f"RabbitMQ did not confirm event {event.id}: {confirmation!r}")

    async def _dead_letter(self, consumer: str, body: bytes, reason: str) -> None:
        from faststream.rabbit import RabbitQueue

        queue = RabbitQueue(self.dead_letters, durable=True)
        await self._broker.declare_queue(queue)
        confirmation = await self._broker.publish(
            body,
            queue=queue,  # the default exchange routes by the queue's name
            persist=True,
            headers={"paymesh-consumer": consumer, "paymesh-reason": reason},
            timeout=10.0,
        )
        if confirmation is not None and confirmation.__class__.__name__ != "Ack":
            raise RuntimeError(f"RabbitMQ did not confirm a dead letter: {confirmation!r}")


def _in_arrival_order(
    consume: Callable[[Any], Awaitable[Any]],
) -> Callable[[Any], Awaitable[Any]]:
    """`consume` for one delivery at a time, in the order the deliveries' tasks started:
    each waits for the one before it to finish (whatever its outcome)."""
    last: asyncio.Future[None] | None = None

    async def in_order(message: Any) -> Any:
        nonlocal last
        before, mine = last, asyncio.get_running_loop().create_future()
        last = mine
        try:
            if before is not None:
                await asyncio.wait([before])
            return await consume(message)
        finally:
            mine.set_result(None)

    return in_order


def _amqp_binding(pattern: str) -> str:
    """An AMQP topic binding that matches at least what the fnmatch `pattern` matches:
    a word with a wildcard becomes `#` (any number of words; fnmatch's `*` also crosses
    dots). The consumer checks the exact pattern on delivery."""
    return ".".join("#" if any(c in word for c in "*?[") else word for word in pattern.split("."))


class NatsBus(BrokerBus):
    """JetStream: a stream per source service (`paymesh-<service>`, subjects
    `paymesh.events.<service>.>`), a durable pull consumer per consumer name and source
    with explicit acknowledgements. `known_sources`: the services whose streams a consumer
    of every event (a pattern starting with a wildcard) reads."""

    def __init__(self, url: str, *, known_sources: Sequence[str] = (), **options: Any) -> None:
        super().__init__(url, **options)
        self.known_sources = tuple(known_sources)

    def _make_broker(self) -> Any:
        from faststream.nats import NatsBroker

        self._streams: set[str] = set()
        return NatsBroker(self.url, logger=_quiet_logger())

    def _declare(self, subscription: BrokerSubscription) -> None:
        from faststream.nats import JStream, PullSub
        from faststream.nats.annotations import NatsMessage
        from nats.js import api

        sources = sorted(source_services(subscription, self.known_sources))
        for source in sources:
            stream = JStream(
                self._stream_name(source), subjects=[f"{self.subject_root}.{source}.>"]
            )
            self._streams.add(source)
            subjects = [
                f"{self.subject_root}.{_nats_filter(pattern)}"
                for pattern in subscription.patterns
                if pattern.split(".", 1)[0] == source
            ]
            if not subjects:  # only patterns such as `*`: all of this source's events
                subjects = [f"{self.subject_root}.{source}.>"]

            async def deliver(message: NatsMessage) -> None:
                await self._deliver(subscription, message.body)

            deliver.__annotations__ = {"message": NatsMessage, "return": None}  # as above

            durable = f"{self.namespace}-{subscription.name}-{source}".replace(".", "-")
            self._broker.subscriber(
                subjects[0] if len(subjects) == 1 else f"{self.subject_root}.{source}.>",
                stream=stream,
                durable=durable,
                # One message per fetch: FastStream handles a fetched batch concurrently,
                # which would lose the stream's order.
                pull_sub=PullSub(batch_size=1, timeout=1.0),
                config=api.ConsumerConfig(
                    ack_wait=self.unacked_redelivery_seconds,
                    max_ack_pending=self.prefetch,
                    deliver_policy=api.DeliverPolicy.ALL,
                ),
                ack_policy=AckPolicy.NACK_ON_ERROR,
            )(deliver)

    async def _send(self, event: CloudEvent) -> None:
        source = event.type.split(".", 1)[0]
        if source not in self._streams:
            await self._ensure_stream(source)
        ack = await self._broker.publish(
            event.model_dump_json().encode(),
            f"{self.subject_root}.{event.type}",
            stream=self._stream_name(source),
            headers={"Nats-Msg-Id": event.id, "content-type": "application/cloudevents+json"},
            timeout=10.0,
        )
        if ack is None:
            raise RuntimeError(f"JetStream did not acknowledge event {event.id}")

    async def _dead_letter(self, consumer: str, body: bytes, reason: str) -> None:
        stream = self._stream_name("dead-letters")
        jetstream = self._broker.connection.jetstream()
        try:
            await jetstream.stream_info(stream)
        except Exception:
            await jetstream.add_stream(name=stream, subjects=[f"{self.dead_letters}.>"])
        ack = await self._broker.publish(
            body,
            f"{self.dead_letters}.{consumer}",
            stream=stream,
            headers={"paymesh-consumer": consumer, "paymesh-reason": reason},
            timeout=10.0,
        )
        if ack is None:
            raise RuntimeError("JetStream did not acknowledge a dead letter")

    def _stream_name(self, source: str) -> str:
        return f"{self.namespace}-{source}"

    async def _ensure_stream(self, source: str) -> None:
        """A stream no consumer in this process declared: made before its first event, so
        the event is kept for the consumers that will come."""
        jetstream = self._broker.connection.jetstream()
        try:
            await jetstream.stream_info(self._stream_name(source))
        except Exception:
            await jetstream.add_stream(
                name=self._stream_name(source), subjects=[f"{self.subject_root}.{source}.>"]
            )
        self._streams.add(source)


class KafkaBus(BrokerBus):
    """Kafka, Redpanda or any broker speaking the Kafka protocol: a topic per source service
    (`paymesh.events.<service>`, `partitions` partitions), each event keyed by its subject
    (else its source) so one subject's events stay in one partition, in order; a consumer
    group per consumer name (`paymesh.<consumer>`), shared by its replicas, which reads
    from the earliest offset it has not committed and commits an offset only after the
    consumer has handled the message — a failure seeks back to it, a consumer killed
    before committing leaves it to the group's next member. Publishes wait for every
    in-sync replica (`acks=all`). `known_sources`: as for NATS, the services whose topics
    a consumer of every event reads."""

    def __init__(
        self,
        url: str,
        *,
        known_sources: Sequence[str] = (),
        partitions: int = 3,
        replication_factor: int = 1,
        session_timeout_seconds: float = 10.0,
        fetch_max_bytes: int = 1024 * 1024,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        self.known_sources = tuple(known_sources)
        self.partitions = partitions
        self.replication_factor = replication_factor
        """Of the topics this bus makes: 1 suits one broker; a cluster wants 3
        (`kafka://…?replication_factor=3`). Topics made beforehand are used as they are."""
        self.session_timeout_seconds = session_timeout_seconds
        """How long a consumer may be silent before its group hands its partitions (and
        the messages it had not committed) to another member."""
        self.fetch_max_bytes = fetch_max_bytes
        """Back-pressure: what one consumer fetches ahead of its handler, at most."""
        self._topics: set[str] = set()
        self._wanted_topics: set[str] = set()

    @property
    def bootstrap_servers(self) -> list[str]:
        """`kafka://host:9092,host2:9092` → the brokers to start from."""
        hosts = urlsplit(self.url).netloc.rsplit("@", 1)[-1]
        return [host if ":" in host else f"{host}:9092" for host in hosts.split(",") if host]

    def topic(self, source: str) -> str:
        return f"{self.subject_root}.{source}"

    def _make_broker(self) -> Any:
        from faststream.kafka import KafkaBroker

        self._topics = set()
        self._wanted_topics = set()
        return KafkaBroker(
            self.bootstrap_servers,
            acks="all",
            client_id=f"{self.namespace}-events",
            request_timeout_ms=10_000,
            allow_auto_create_topics=False,
            logger=_quiet_logger(),
        )

    def _declare(self, subscription: BrokerSubscription) -> None:
        from faststream.kafka.annotations import KafkaMessage

        topics = sorted(
            self.topic(source) for source in source_services(subscription, self.known_sources)
        )
        self._wanted_topics.update(topics)

        async def deliver(message: KafkaMessage) -> None:
            await self._deliver(subscription, message.body)

        deliver.__annotations__ = {"message": KafkaMessage, "return": None}  # as RabbitMQ's
        session_ms = int(self.session_timeout_seconds * 1000)
        self._broker.subscriber(
            *topics,
            group_id=f"{self.namespace}.{subscription.name}",
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(session_ms // 3, 100),
            fetch_max_bytes=self.fetch_max_bytes,
            max_partition_fetch_bytes=self.fetch_max_bytes,
            max_poll_records=self.prefetch,
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )(deliver)

    async def _before_start(self) -> None:
        # Topics exist before the consumers ask for them: a group that subscribed to a
        # topic not made yet would miss the first events published to it.
        await self._ensure_topics(self._wanted_topics)

    async def _start_broker(self) -> None:
        # A consumer's start waits for its group to assign it partitions, which the broker
        # delays (Kafka's group.initial.rebalance.delay.ms, 3 s by default) to gather the
        # group's members: FastStream starts subscribers one after another, so a service
        # with ten consumers would wait ten delays. They start together here.
        await self._broker.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self._broker.subscribers))
        for publisher in self._broker.publishers:
            await publisher.start()
        self._broker.running = True

    async def publish_batch(self, events: Sequence[CloudEvent]) -> None:
        await self._wait_started()
        topics = {self.topic(event.type.split(".", 1)[0]) for event in events}
        if missing := topics - self._topics:
            await self._ensure_topics(missing)
        # Sent together, confirmed together: the producer keeps each partition's order.
        confirmations = [
            await self._broker.publish(
                event.model_dump_json().encode(),
                self.topic(event.type.split(".", 1)[0]),
                key=(event.subject or event.source).encode(),
                headers={"content-type": "application/cloudevents+json", "ce_id": event.id},
                no_confirm=True,
            )
            for event in events
        ]
        async with asyncio.timeout(10.0):
            await asyncio.gather(*confirmations)

    async def _send(self, event: CloudEvent) -> None:
        await self.publish_batch([event])

    async def _dead_letter(self, consumer: str, body: bytes, reason: str) -> None:
        await self._ensure_topics({self.dead_letters})
        await self._broker.publish(
            body,
            self.dead_letters,
            key=consumer.encode(),
            headers={"paymesh-consumer": consumer, "paymesh-reason": reason},
        )

    async def _ensure_topics(self, topics: set[str]) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        wanted = sorted(topics - self._topics)
        if not wanted:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, request_timeout_ms=10_000
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            new = [
                NewTopic(topic, self.partitions, self.replication_factor)
                for topic in wanted
                if topic not in existing
            ]
            if new:
                response = await admin.create_topics(new)
                for name, code, *_rest in getattr(response, "topic_errors", ()):
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise RuntimeError(f"Kafka refused to create topic {name}: error {code}")
        finally:
            await admin.close()
        self._topics.update(wanted)


def source_services(subscription: BrokerSubscription, known_sources: Sequence[str]) -> set[str]:
    """The source services whose streams (NATS) or topics (Kafka) a consumer reads: those
    its patterns name, and every known source for a pattern whose first word is a
    wildcard (audit's `*`): events of a service unknown here would not reach it."""
    sources: set[str] = set()
    for pattern in subscription.patterns:
        first = pattern.split(".", 1)[0]
        if not any(c in first for c in "*?["):
            sources.add(first)
        else:
            sources.update(s for s in known_sources if fnmatch.fnmatchcase(s, first))
    if not sources:
        raise ValueError(
            f"consumer {subscription.name}: its patterns {subscription.patterns} name no "
            "source service, and none is known to this bus"
        )
    return sources


def _nats_filter(pattern: str) -> str:
    """A NATS filter subject matching at least what the fnmatch `pattern` matches."""
    words = pattern.split(".")
    for index, word in enumerate(words):
        if any(c in word for c in "*?["):
            return ".".join([*words[:index], ">"])
    return pattern


def broker_bus(
    url: str, namespace: str = DEFAULT_NAMESPACE, known_sources: Sequence[str] = ()
) -> BrokerBus:
    """The bus for `PAYMESH_BROKER_URL`, by its scheme; `known_sources`: every service whose
    events may be published (NATS keeps a stream per source)."""
    scheme = urlsplit(url).scheme
    if scheme in ("amqp", "amqps"):
        return RabbitBus(url, namespace=namespace)
    if scheme in ("nats", "tls"):
        return NatsBus(url, namespace=namespace, known_sources=known_sources)
    if scheme == "kafka":
        return KafkaBus(
            url, namespace=namespace, known_sources=known_sources, **_kafka_options(url)
        )
    raise ValueError(f"PAYMESH_BROKER_URL: unknown scheme {scheme!r} (amqp://, nats://, kafka://)")


def _kafka_options(url: str) -> dict[str, int]:
    """`kafka://host:9092?partitions=6&replication_factor=3`: how the topics the bus makes
    are laid out."""
    options: dict[str, int] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name not in ("partitions", "replication_factor"):
            raise ValueError(f"PAYMESH_BROKER_URL: unknown Kafka option {name!r}")
        if not value.isdigit() or not 1 <= int(value) <= 1000:
            raise ValueError(f"PAYMESH_BROKER_URL: {name} must be a whole number from 1 to 1000")
        options[name] = int(value)
    return options
