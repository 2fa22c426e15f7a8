"""A consumer process for the crash test (tests/kernel/test_brokers.py): subscribes on the
given broker, prints `got <event id>` when an event arrives, and then holds it forever —
never acknowledging — until it is killed.

    python -m tests.kernel.broker_consumer rabbitmq|nats|kafka URL CONSUMER PATTERN
"""

from __future__ import annotations

import asyncio
import sys

from paymesh.kernel.brokers import BrokerBus, KafkaBus, NatsBus, RabbitBus
from paymesh.kernel.events import CloudEvent


async def main(kind: str, url: str, consumer: str, pattern: str) -> None:
    bus: BrokerBus
    if kind == "rabbitmq":
        bus = RabbitBus(url)
    elif kind == "kafka":
        bus = KafkaBus(url, session_timeout_seconds=6.0)  # as test_brokers' buses
    else:
        bus = NatsBus(url, unacked_redelivery_seconds=2)

    async def hold(event: CloudEvent) -> None:
        print(f"got {event.id}", flush=True)
        await asyncio.Event().wait()

    bus.subscribe(consumer, [pattern], hold)
    await bus.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
