"""The platform on a real broker (PAYMESH_BROKER_URL): the outbox relay publishes through
RabbitMQ, NATS JetStream or a Kafka-protocol broker, the service's consumers take their
events from there — with the inbox, retries and the dead-letter table as on the in-process
bus — and `/ready`
reports the broker. Each test has its own broker namespace, removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paymesh.kernel.brokers import BrokerBus, KafkaBus, NatsBus, RabbitBus
from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.kernel.sample import app as sample_app
from tests.kernel.sample.app import SPEC
from tests.kernel.support import bearer, effect_count, eventually, table_rows
from tests.kernel.test_brokers import IN_CI, NATS_URL, RABBIT_URL, _reachable

NOTES = "/v1/sample/notes"
NOTE = {"text": "hello", "amount": 1250, "currency": "USD"}


BUS_CLASSES: dict[str, type[BrokerBus]] = {
    "rabbitmq": RabbitBus,
    "nats": NatsBus,
    "kafka": KafkaBus,
}


@pytest.fixture(params=list(BUS_CLASSES))
async def platform(
    request: pytest.FixtureRequest, make_platform: Callable[..., Any], settings: Settings
) -> AsyncIterator[Platform]:
    kind: str = request.param
    if kind == "kafka":
        url = request.getfixturevalue("kafka_url")
    elif await _reachable(kind):
        url = RABBIT_URL if kind == "rabbitmq" else NATS_URL
    else:
        if IN_CI:
            pytest.fail(f"{kind} is required in CI")
        pytest.skip(f"{kind} is not reachable")
    namespace = f"t{uuid.uuid4().hex[:12]}"
    events = settings.events.model_copy(update={"broker_namespace": namespace})
    on_broker = settings.model_copy(update={"broker_url": url, "events": events})
    built: Platform = await make_platform(specs=[SPEC], settings_override=on_broker)
    bus = built.bus
    assert isinstance(bus, BUS_CLASSES[kind])
    yield built
    await built.stop()  # before the queues and streams go
    await _remove(bus)


async def _remove(bus: BrokerBus) -> None:
    if isinstance(bus, RabbitBus):
        from aio_pika import connect_robust

        connection = await connect_robust(RABBIT_URL)
        async with connection:
            channel = await connection.channel()
            for subscription in bus.subscriptions:
                await channel.queue_delete(f"{bus.namespace}.{subscription.name}")
            await channel.exchange_delete(bus.subject_root)
        return
    if isinstance(bus, KafkaBus):
        from tests.kernel.test_brokers import _delete_kafka_topics

        await _delete_kafka_topics(bus, [bus.topic("sample")])
        return
    import nats

    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().delete_stream(f"{bus.namespace}-sample")
    finally:
        await client.close()


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(platform) as client:
        yield client


async def create_note(client: httpx.AsyncClient, platform: Platform, text: str) -> str:
    token = platform.tokens.issue("usr_admin", roles=["admin"])
    response = await client.post(NOTES, json={**NOTE, "text": text}, headers=bearer(token))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_events_go_through_the_broker_to_the_consumers(
    platform: Platform, client: httpx.AsyncClient
) -> None:
    note_ids = [await create_note(client, platform, f"note {number}") for number in range(3)]

    for note_id in note_ids:
        assert await eventually(
            lambda note_id=note_id: effect_count(platform, f"note:{note_id}"), lambda n: n >= 1
        )
        assert await eventually(
            lambda note_id=note_id: effect_count(platform, f"picky:{note_id}"), lambda n: n >= 1
        )
    # Published once, handled once per consumer (the inbox absorbs any redelivery).
    for note_id in note_ids:
        assert await effect_count(platform, f"note:{note_id}") == 1


async def test_a_poison_event_is_dead_lettered_and_the_other_consumer_still_gets_it(
    platform: Platform, client: httpx.AsyncClient
) -> None:
    note_id = await create_note(client, platform, "poison")

    [dead] = await eventually(lambda: table_rows(platform, "dead_letter"), bool)
    assert dead["consumer"] == "sample.picky"
    assert await eventually(lambda: effect_count(platform, f"note:{note_id}"), lambda n: n >= 1)
    assert await effect_count(platform, f"picky:{note_id}") == 0

    # Fixed, then replayed by an operator: handled once, whatever bus brought it.
    sample_app.cured.add("poison")
    ops = bearer(platform.tokens.issue("usr_ops", roles=["ops"]))
    replayed = await client.post(f"/v1/sample/dead-letters/{dead['id']}/replay", headers=ops)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["outcome"] == "handled"
    assert await effect_count(platform, f"picky:{note_id}") == 1
    again = await client.post(f"/v1/sample/dead-letters/{dead['id']}/replay", headers=ops)
    assert again.status_code == 409
    assert await effect_count(platform, f"picky:{note_id}") == 1


async def test_ready_reports_the_broker(platform: Platform, client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["broker"] == "ok"


async def test_a_process_without_workers_neither_relays_nor_consumes(
    make_platform: Callable[..., Any], settings: Settings
) -> None:
    """`serve --no-workers` answers the API only: its events are relayed, and its
    consumers fed, by the service's worker processes, so it opens no broker connection."""
    on_broker = settings.model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:1/"})
    platform: Platform = await make_platform(
        specs=[SPEC], run_workers=False, settings_override=on_broker
    )
    assert isinstance(platform.bus, RabbitBus)  # the broker at port 1 was never dialled
    assert platform.bus_running is False
    async with http_client(platform) as client:
        checks = (await client.get("/ready")).json()["checks"]
    assert "broker" not in checks
