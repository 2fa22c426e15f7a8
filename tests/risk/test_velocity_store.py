"""The velocity store's hourly totals against the rows they summarise (property tests on
the real database): after any sequence of records, re-records and voids, (a) each
customer's `risk_velocity_hour` equals its non-voided `risk_activity` rows summed per UTC
hour, and (b) `repository.velocity` gives exactly what a scan of the rows gives, at window
edges included (a row exactly 24 hours old does not count; one at midnight or the month's
first instant does)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from paymesh.kernel.db import Database
from paymesh.kernel.migrations import alembic_config
from paymesh.platform import Platform
from paymesh.risk import repository
from paymesh.risk.app import SPEC
from paymesh.risk.models import Activity, VelocityHour
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

    for customer, transaction, ago in checks:
        now = NOW - dt.timedelta(minutes=ago)
        day_start, month_start = day_and_month_start(now)
        async with database.transaction() as session:
            got = await repository.velocity(
                session,
                run + customer,
                run + transaction,
                since_24h=now - dt.timedelta(hours=24),
                day_start=day_start,
                month_start=month_start,
            )
        figures = (got.transactions_24h, got.daily_usd, got.monthly_usd)
        assert figures == _scan(rows, run + customer, run + transaction, now), (customer, ago)
        own = next(
            (
                row
                for row in rows
                if (row.customer_id, row.transaction_id) == (run + customer, run + transaction)
                and not row.voided
            ),
            None,
        )
        if own is None:
            assert got.own is None
        else:
            assert got.own == repository.Counted(own.amount_usd, own.occurred_at)


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
