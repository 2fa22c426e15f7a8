"""Audit benchmark (issue 12): how fast the trail takes a burst of events on PostgreSQL,
against C1 (the pgbench per-transaction ceiling bench/ledger measures) taken in the same
run, and how long verification takes per 100,000 records.

- `c1_pgbench`: bench/ledger's C1 (its seeding and pgbench script, imported from there).
- `append_burst`, twice over `PAYMESH_BENCH_EVENTS` events (default 20,000) from five
  source services (five chains), records per second and the ratio to C1 (target ≥ 0.5):
  - batched (the target): as the relays deliver them. Each source service's relay hands
    its outbox to the bus in batches of the configured `relay_batch_size`
    (`bus.publish_batch`); audit's consumer takes each batch in one transaction (inbox
    rows, masking, one chain lock, one multi-row insert; `Consumer.handle_batch`). The
    five relays run at once, each batch after the previous one, as in the platform.
  - per event (for comparison): audit's consumer called once per event (one transaction
    each), `PAYMESH_BENCH_CONCURRENCY` at a time (default 8).
- `verify`: `AuditTrail.verify` over everything appended, scaled to seconds per 100,000.

    .venv/bin/python bench/audit/run.py        # or: make bench
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ADMIN_URL = os.environ.get("PAYMESH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
DATABASE = "paymesh_bench_audit"
EVENTS = int(os.environ.get("PAYMESH_BENCH_EVENTS", "20000"))
CONCURRENCY = int(os.environ.get("PAYMESH_BENCH_CONCURRENCY", "8"))
SOURCES = ("payments", "wallets", "ledger", "identity", "risk")


def ledger_bench() -> Any:
    """bench/ledger/run.py as a module: its C1 is the reference."""
    spec = importlib.util.spec_from_file_location("ledger_bench", ROOT / "bench/ledger/run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(number: int) -> Any:
    from paymesh.kernel.events import CloudEvent

    source = SOURCES[number % len(SOURCES)]
    return CloudEvent(
        source=f"/paymesh/{source}",
        type=f"{source}.thing.happened",
        subject=f"res_{number}",
        data={
            "amount": number * 100,
            "currency": "USD",
            "payer_email": "jane.doe@example.com",
            "card_number": "4111111111111111",
            "reference": f"order {number}",
        },
    )


async def append_burst(database_url: str) -> dict[str, Any]:
    from paymesh.kernel.config import Settings
    from paymesh.platform import Platform

    settings = Settings(
        _env_file=None, env="test", database_url=database_url, access_log=False, log_level="WARNING"
    )
    platform = Platform(settings, ["audit"], run_workers=False)
    await platform.migrate()
    await platform.start()
    runtime = platform.runtimes["audit"]
    batch_size = settings.events.relay_batch_size
    batched_seconds = await batched(platform, [event(n) for n in range(EVENTS)], batch_size)
    consumer = runtime.consumers["audit_trail"]
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for number in range(EVENTS, 2 * EVENTS):
        queue.put_nowait(event(number))

    async def worker() -> None:
        while not queue.empty():
            await consumer(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    per_event_seconds = time.perf_counter() - started
    trail = runtime.state["trail"]
    started = time.perf_counter()
    result = await trail.verify(runtime.database)
    verify_seconds = time.perf_counter() - started
    await platform.stop()
    return {
        "events": EVENTS,
        "relay_batch_size": batch_size,
        "batched_records_per_second": EVENTS / batched_seconds,
        "concurrency": CONCURRENCY,
        "per_event_records_per_second": EVENTS / per_event_seconds,
        "verify_ok": result.ok,
        "verified_records": result.records,
        "verify_seconds_per_100k": verify_seconds * 100_000 / max(result.records, 1),
    }


async def batched(platform: Any, events: list[Any], batch_size: int) -> float:
    """Seconds to deliver `events` as the relays do: per source service, its events in
    order, `batch_size` at a time through `publish_batch`; the services' relays at once."""
    by_source: dict[str, list[Any]] = {}
    for item in events:
        by_source.setdefault(item.source, []).append(item)

    async def relay(outbox: list[Any]) -> None:
        for start in range(0, len(outbox), batch_size):
            await platform.bus.publish_batch(outbox[start : start + batch_size])

    started = time.perf_counter()
    await asyncio.gather(*(relay(outbox) for outbox in by_source.values()))
    return time.perf_counter() - started


def main() -> None:
    ledger = ledger_bench()
    ledger.psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    ledger.psql(f'CREATE DATABASE "{DATABASE}"')
    ledger.seed_postgres()
    load_before = os.getloadavg()
    c1 = ledger.run_c1()["transfers_per_second"]
    burst = asyncio.run(append_burst(f"{ADMIN_URL}/{DATABASE}"))
    ratio = burst["batched_records_per_second"] / c1
    per_event_ratio = burst["per_event_records_per_second"] / c1
    print(
        f"Audit benchmark (load average {load_before[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after)"
    )
    print(f"  C1 (pgbench, ledger transfer per transaction)   {c1:9.0f}/s")
    print(
        f"  audit appends, burst of {burst['events']} from {len(SOURCES)} sources, "
        f"relay batches of {burst['relay_batch_size']}   "
        f"{burst['batched_records_per_second']:9.0f}/s  "
        f"= {ratio:.2f} x C1  target >= 0.5: {'PASS' if ratio >= 0.5 else 'FAIL'}"
    )
    print(
        f"  audit appends, one transaction per event, {burst['concurrency']} at a time   "
        f"{burst['per_event_records_per_second']:9.0f}/s  = {per_event_ratio:.2f} x C1"
    )
    print(
        f"  verify: {burst['verified_records']} records ok={burst['verify_ok']}, "
        f"{burst['verify_seconds_per_100k']:.2f} s per 100,000 records"
    )
    line = {
        "benchmark": "audit",
        "c1": c1,
        "ratio": ratio,
        "per_event_ratio": per_event_ratio,
        **burst,
    }
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"audit-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(line))
    print(json.dumps(line))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
