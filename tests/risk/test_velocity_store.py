"""The velocity store's hourly totals against the rows they summarise (property tests on
the real database): after any sequence of records, re-records and voids, (a) each
customer's `risk_velocity_hour` equals its non-voided `risk_activity` rows summed per UTC
hour, and (b) `repository.velocities` gives exactly what a scan of the rows gives, at window
edges included (a row exactly 24 hours old does not count; one at midnight or the month's
first instant does)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import Database
from paymesh.kernel.held_connection import HeldConnections
from paymesh.kernel.migrations import alembic_config
from paymesh.platform import Platform
from paymesh.risk import repository
from paymesh.risk.app import SPEC
from paymesh.risk.models import Activity, Decision, VelocityHour
from paymesh.risk.rules import day_and_month_start

# 1 March, 00:30 UTC: the 24-hour window, the day and the month all start near here.
NOW = dt.datetime(2030, 3, 1, 0, 30, tzinfo=dt.UTC)
CUSTOMERS = ("c0", "c1")
TRANSACTIONS = tuple(f"t{number}" for number in range(5))
_examples = itertools.count()

# Minutes before NOW: whole minutes, so rows land exactly on the 24-hour edge (1440), on
# midnight (30), on the month's start (30) and on hour boundaries; up to 40 days back.
minutes_ago = st.one_of(
    st.sampled_from([0, 1, 29, 30, 31, 89, 90, 1439, 1440, 1441, 1470, 1500]),
    st.integers(0, 40 * 24 * 60),
)
records = st.tuples(
    st.just("record"),
    st.sampled_from(CUSTOMERS),
    st.sampled_from(TRANSACTIONS),
    st.integers(0, 10_000),
    minutes_ago,
    st.booleans(),  # recorded as voided (an event's void arriving as a record)
)
voids = st.tuples(st.just("void"), st.sampled_from(TRANSACTIONS))
actions = st.lists(st.one_of(records, records, voids), min_size=1, max_size=25)
probes = st.lists(
    st.tuples(st.sampled_from(CUSTOMERS), st.sampled_from((*TRANSACTIONS, "t_new")), minutes_ago),
    min_size=1,
    max_size=6,
)


@pytest.fixture
async def database(make_platform: Callable[..., Any]) -> Database:
    platform: Platform = await make_platform(["risk"], run_workers=False)
    found: Database = platform.runtimes["risk"].database
    return found


async def _record(session: AsyncSession, run: str, step: tuple[Any, ...]) -> None:
    """A `records` step, as an event would record it."""
    _, customer, transaction, amount, ago, voided = step
    await repository.record_activity(
        session,
        {
            "customer_id": run + customer,
            "transaction_id": run + transaction,
            "amount_usd": amount,
            "occurred_at": NOW - dt.timedelta(minutes=ago),
            "voided": voided,
            "source": "event",
        },
    )


def _scan(
    rows: list[Activity], customer_id: str, transaction_id: str, now: dt.datetime
) -> tuple[int, int, int]:
    day_start, month_start = day_and_month_start(now)
    counted = [
        row
        for row in rows
        if row.customer_id == customer_id
        and row.transaction_id != transaction_id
        and not row.voided
    ]
    return (
        sum(1 for row in counted if row.occurred_at > now - dt.timedelta(hours=24)),
        sum(row.amount_usd for row in counted if row.occurred_at >= day_start),
        sum(row.amount_usd for row in counted if row.occurred_at >= month_start),
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=actions, checks=probes)
async def test_totals_and_velocity_agree_with_the_rows(
    database: Database, steps: list[tuple[Any, ...]], checks: list[tuple[str, str, int]]
) -> None:
    run = f"x{next(_examples)}_"  # the database outlives one example: ids of its own
    for step in steps:
        async with database.transaction() as session:
            if step[0] == "record":
                await _record(session, run, step)
            else:
                await repository.void_activity(session, run + step[1])

    async with database.transaction() as session:
        customers = [run + customer for customer in CUSTOMERS]
        rows = list(
            await session.scalars(select(Activity).where(Activity.customer_id.in_(customers)))
        )
        hours = list(
            await session.scalars(
                select(VelocityHour).where(VelocityHour.customer_id.in_(customers))
            )
        )
    expected: Counter[tuple[str, dt.datetime, str]] = Counter()
    for row in rows:
        if not row.voided:
            hour = repository.hour_of(row.occurred_at)
            expected[row.customer_id, hour, "n"] += 1
            expected[row.customer_id, hour, "usd"] += row.amount_usd
    kept: Counter[tuple[str, dt.datetime, str]] = Counter()
    for total in hours:
        kept[total.customer_id, total.hour_start, "n"] += total.transactions
        kept[total.customer_id, total.hour_start, "usd"] += total.amount_usd
    assert +kept == +expected  # hours whose totals went back to zero may stay, as zeros
    assert all(value >= 0 for value in kept.values())

    by_instant: dict[int, list[tuple[str, str]]] = {}
    for customer, transaction, ago in checks:
        by_instant.setdefault(ago, []).append((run + customer, run + transaction))
    for ago, pairs in by_instant.items():
        now = NOW - dt.timedelta(minutes=ago)
        async with database.transaction() as session:
            # Several pairs at once: on PostgreSQL, one statement for all of them.
            found = await repository.velocities(session, pairs, _windows(now))
        for pair in pairs:
            got = found[pair]
            figures = (got.transactions_24h, got.daily_usd, got.monthly_usd)
            assert figures == _scan(rows, *pair, now), (pair, ago)
            own = next(
                (
                    row
                    for row in rows
                    if (row.customer_id, row.transaction_id) == pair and not row.voided
                ),
                None,
            )
            if own is None:
                assert got.own is None
            else:
                assert got.own == repository.Counted(own.amount_usd, own.occurred_at)


def _windows(now: dt.datetime) -> repository.Windows:
    day_start, month_start = day_and_month_start(now)
    return repository.Windows(now - dt.timedelta(hours=24), day_start, month_start)


def _decision(customer_id: str, transaction_id: str, number: int) -> dict[str, Any]:
    return {
        "id": f"dec_{customer_id}_{number}",
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "type": "p2p",
        "amount": 1,
        "currency": "USD",
        "request": {"n": number},
        "facts": {},
        "screening": [],
        "score": 0,
        "level": "low",
        "decision": "allow",
        "reasons": [],
        "ruleset_version": 1,
        "requested_by": "test",
        "created_at": NOW,
    }


# One batch of evaluations at NOW: (customer, transaction, USD cents, whether it counts: a
# blocked one adds nothing). Transactions repeat, within the batch and with stored rows.
batch_items = st.lists(
    st.tuples(
        st.sampled_from(CUSTOMERS),
        st.sampled_from(TRANSACTIONS),
        st.integers(0, 10_000),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(records, max_size=10), batch=batch_items)
async def test_a_batch_judges_each_evaluation_as_if_those_before_were_written(
    database: Database, steps: list[tuple[Any, ...]], batch: list[tuple[str, str, int, bool]]
) -> None:
    """`BatchVelocity` over velocities read once before the batch gives each evaluation
    what a read after the evaluations before it were written gives (the rows as a scan
    sees them), and `record_decisions` leaves the totals equal to the rows."""
    run = f"b{next(_examples)}_"
    for step in steps:
        async with database.transaction() as session:
            await _record(session, run, step)
    customers = [run + customer for customer in CUSTOMERS]
    async with database.transaction() as session:
        stored = await session.scalars(select(Activity).where(Activity.customer_id.in_(customers)))
        rows = {
            (row.customer_id, row.transaction_id): SimpleNamespace(
                customer_id=row.customer_id,
                transaction_id=row.transaction_id,
                amount_usd=row.amount_usd,
                occurred_at=row.occurred_at,
                voided=row.voided,
            )
            for row in stored
        }

    windows = _windows(NOW)
    recorded = []
    async with database.transaction() as session:
        pairs = [(run + customer, run + transaction) for customer, transaction, _, _ in batch]
        velocity = repository.BatchVelocity(
            windows, await repository.velocities(session, pairs, windows)
        )
        for number, ((customer_id, transaction_id), (_, _, amount, counts)) in enumerate(
            zip(pairs, batch, strict=True)
        ):
            got = velocity.of((customer_id, transaction_id))
            figures = (got.transactions_24h, got.daily_usd, got.monthly_usd)
            assert figures == _scan(list(rows.values()), customer_id, transaction_id, NOW)
            own = rows.get((customer_id, transaction_id))
            expected_own = None
            if own is not None and not own.voided:
                expected_own = repository.Counted(own.amount_usd, own.occurred_at)
            assert got.own == expected_own
            activity = None
            if counts:
                activity = {
                    "customer_id": customer_id,
                    "transaction_id": transaction_id,
                    "amount_usd": amount,
                    "occurred_at": NOW,
                    "voided": False,
                    "source": "evaluation",
                }
                velocity.record((customer_id, transaction_id), repository.Counted(amount, NOW))
                rows[customer_id, transaction_id] = SimpleNamespace(**activity)
            decision = _decision(customer_id, transaction_id, number)
            recorded.append(repository.Recorded(decision, activity, got.own))
        await repository.record_decisions(session, recorded)

    async with database.transaction() as session:
        kept = {
            (row.customer_id, row.transaction_id): (row.amount_usd, row.occurred_at, row.voided)
            for row in await session.scalars(
                select(Activity).where(Activity.customer_id.in_(customers))
            )
        }
        hours = list(
            await session.scalars(
                select(VelocityHour).where(VelocityHour.customer_id.in_(customers))
            )
        )
        decisions = await session.scalar(
            select(func.count()).select_from(Decision).where(Decision.customer_id.in_(customers))
        )
    assert kept == {key: (row.amount_usd, row.occurred_at, row.voided) for key, row in rows.items()}
    assert decisions == len(batch)
    expected: Counter[tuple[str, dt.datetime, str]] = Counter()
    for (customer_id, _), (amount_usd, occurred_at, voided) in kept.items():
        if not voided:
            expected[customer_id, repository.hour_of(occurred_at), "n"] += 1
            expected[customer_id, repository.hour_of(occurred_at), "usd"] += amount_usd
    totals: Counter[tuple[str, dt.datetime, str]] = Counter()
    for total in hours:
        totals[total.customer_id, total.hour_start, "n"] += total.transactions
        totals[total.customer_id, total.hour_start, "usd"] += total.amount_usd
    assert +totals == +expected
    assert all(value >= 0 for value in totals.values())


async def test_the_migration_fills_the_totals_from_existing_rows(database: Database) -> None:
    """Revision 0003 on a database that already holds activity (from before it existed)."""
    config = alembic_config("risk", SPEC.migrations, SPEC.metadata)

    def to(revision: str) -> Any:
        def run(sync_connection: Any) -> None:
            config.attributes["connection"] = sync_connection
            if revision == "head":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)

        return run

    async with database.engine.begin() as connection:
        await connection.run_sync(to("0002"))
    rows = [
        ("m_a", "p1", 100, NOW - dt.timedelta(minutes=5), False),
        ("m_a", "p2", 250, NOW - dt.timedelta(minutes=20), False),  # the same hour
        ("m_a", "p3", 999, NOW - dt.timedelta(minutes=10), True),  # voided: counts nothing
        ("m_a", "p4", 40, NOW - dt.timedelta(hours=30), False),
        ("m_b", "p5", 7, NOW, False),
    ]
    async with database.transaction() as session:
        await session.execute(
            Activity.__table__.insert(),
            [
                {
                    "customer_id": customer,
                    "transaction_id": transaction,
                    "amount_usd": amount,
                    "occurred_at": at,
                    "voided": voided,
                    "source": "event",
                }
                for customer, transaction, amount, at, voided in rows
            ],
        )
    async with database.engine.begin() as connection:
        await connection.run_sync(to("head"))
    async with database.transaction() as session:
        totals = {
            (row.customer_id, row.hour_start): (row.transactions, row.amount_usd)
            for row in await session.scalars(
                select(VelocityHour).where(VelocityHour.customer_id.in_(["m_a", "m_b"]))
            )
        }
    assert totals == {
        ("m_a", repository.hour_of(NOW)): (2, 350),
        ("m_a", repository.hour_of(NOW - dt.timedelta(hours=30))): (1, 40),
        ("m_b", repository.hour_of(NOW)): (1, 7),
    }


async def test_a_batch_stores_its_decisions_as_given(database: Database) -> None:
    """Decisions written in one batch read back exactly (on PostgreSQL they travel as one
    JSON parameter): an integer beyond 64 bits in the request, text beyond the BMP, an
    instant given in another offset, and a decision that blocked (no activity)."""
    run = f"s{next(_examples)}_"
    given_at = dt.datetime(
        2030, 3, 1, 6, 15, 1, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45))
    )
    first = _decision(run + "c0", run + "t0", 0) | {
        "request": {"metadata": {"big": 2**80, "name": "Zoë \U0001f600 \u4e2d"}},
        "created_at": given_at,
    }
    second = _decision(run + "c0", run + "t1", 1) | {"decision": "block", "level": "high"}
    async with database.transaction() as session:
        await repository.record_decisions(
            session, [repository.Recorded(first), repository.Recorded(second)]
        )
    async with database.transaction() as session:
        for written in (first, second):
            row = await repository.decision(session, written["id"])
            assert row is not None
            read = {name: getattr(row, name) for name in written}
            assert read == written
        assert not await repository.has_activity(session, run + "t1")


async def test_a_read_that_waited_for_the_lock_sees_what_the_holder_committed(
    database: Database,
) -> None:
    """The velocity read waits for the customer's lock and then sees the holder's committed
    row. On PostgreSQL the lock and the read are one call (risk_locked_velocities): a read
    whose snapshot predated the lock would miss the row and let two payments both fit under
    a limit only one fits under. On SQLite the second writer waits for the first."""
    run = f"w{next(_examples)}_"
    customer, pair = run + "c0", (run + "c0", run + "t_new")
    holder_wrote = asyncio.Event()

    async def read_when_free() -> repository.Velocity:
        await holder_wrote.wait()
        async with database.transaction() as session:
            found = await repository.velocities(session, [pair], _windows(NOW))
        return found[pair]

    reader = asyncio.create_task(read_when_free())
    async with database.transaction() as session:
        await repository.lock_velocity(session, customer)
        await _record(session, run, ("record", "c0", "t1", 700, 5, False))
        holder_wrote.set()
        await asyncio.sleep(0.3)
        assert not reader.done()  # waiting for the holder's lock (or SQLite's writer)
    got = await asyncio.wait_for(reader, 10)

    assert (got.transactions_24h, got.daily_usd, got.monthly_usd) == (1, 700, 700)


async def test_a_batch_of_only_replays_costs_no_statement(database: Database) -> None:
    """A group commit's batch whose evaluations were all keys' replays or refusals reads no
    velocity and writes no decision: neither call so much as begins the transaction."""
    async with database.sessions() as session:
        assert await repository.velocities(session, [], _windows(NOW)) == {}
        await repository.record_decisions(session, [])
        assert not session.in_transaction()


@pytest.mark.postgres_only
async def test_a_plain_batch_never_begins_the_group_commits_session(database: Database) -> None:
    """On PostgreSQL a batch runs on the writer's held connection (kernel/held_connection.py)
    with a session that begins only for ORM work. A plain batch's statements (the active
    rule set version, the velocities under their locks, the decisions) all go to the driver:
    beginning the session would cost more CPU than those statements."""
    run = f"h{next(_examples)}_"
    held = HeldConnections(database)
    decision = _decision(run + "c0", run + "t0", 0)
    try:
        async with held.transaction() as session:
            assert await repository.active_version(session) is not None
            velocity = await repository.velocities(
                session, [(run + "c0", run + "t0")], _windows(NOW)
            )
            assert velocity[(run + "c0", run + "t0")].transactions_24h == 0
            await repository.record_decisions(session, [repository.Recorded(decision)])
            assert not session.in_transaction()
    finally:
        await held.close()

    async with database.transaction() as session:
        assert await repository.decision(session, decision["id"]) is not None
