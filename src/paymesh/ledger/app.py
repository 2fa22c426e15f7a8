"""Builds the ledger service."""

from __future__ import annotations

from pathlib import Path

from paymesh.kernel.decoding import MEBIBYTE
from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec
from paymesh.ledger.api import router
from paymesh.ledger.demo import seed_demo
from paymesh.ledger.engine import TransferEngine
from paymesh.ledger.events import EVENTS
from paymesh.ledger.fastpath import fast_paths
from paymesh.ledger.jobs import periodic_jobs
from paymesh.ledger.models import kernel_tables, metadata
from paymesh.ledger.service import LedgerService
from paymesh.ledger.writer import BatchWriter, PostgresWriter, SqlAlchemyWriter

BATCH_BODY_LIMIT_BYTES = 8 * MEBIBYTE
"""A batch holds up to 8,000 transfers of ~250 bytes, each with up to 4 KiB of metadata;
8 MiB takes every realistic batch while still bounding what one request can make us hold."""


def _setup(runtime: ServiceRuntime) -> None:
    settings = runtime.settings.ledger
    database = runtime.database
    writers = settings.writers if database.is_postgres else 1
    writer: BatchWriter = (
        PostgresWriter(database, runtime.outbox, connections=writers)
        if database.is_postgres
        else SqlAlchemyWriter(database, runtime.outbox)
    )
    engine = TransferEngine(
        writer,
        runtime.outbox,
        writers=writers,
        max_operations=settings.group_commit_max_transfers,
        max_queued_operations=settings.max_queued_transfers,
    )
    runtime.state["engine"] = engine
    runtime.state["ledger"] = LedgerService(engine, runtime.outbox, runtime.database.reads)


async def _start(runtime: ServiceRuntime) -> None:
    engine: TransferEngine = runtime.state["engine"]
    await engine.start()


async def _stop(runtime: ServiceRuntime) -> None:
    engine: TransferEngine = runtime.state["engine"]
    await engine.stop()


SPEC = ServiceSpec(
    name="ledger",
    title="Ledger",
    description="Double-entry accounts and transfers, two-phase, exact to the minor unit.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    setup=_setup,
    on_start=_start,
    on_stop=_stop,
    periodic_jobs=periodic_jobs,
    fast_paths=fast_paths,
    body_limits={("POST", "/v1/ledger/transfers/batch"): BATCH_BODY_LIMIT_BYTES},
    seed_demo=seed_demo,
    events=EVENTS,
)
