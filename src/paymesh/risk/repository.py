"""Every query of the risk service. Callers own the transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import lock_until_commit
from paymesh.kernel.pagination import decode_cursor, encode_cursor
from paymesh.kernel.reads import Query, in_transaction
from paymesh.risk.models import (
    Activity,
    Case,
    Decision,
    RuleSet,
    RuleSetActivation,
    VelocityHour,
)

# -- rule sets ------------------------------------------------------------------------------


async def active_activation(session: AsyncSession) -> RuleSetActivation | None:
    query = select(RuleSetActivation).order_by(RuleSetActivation.id.desc()).limit(1)
    return (await session.scalars(query)).first()


ACTIVE_VERSION = select(RuleSetActivation.version).order_by(RuleSetActivation.id.desc()).limit(1)


async def active_version(session: AsyncSession) -> int | None:
    """The active version: one column of one row, read on every evaluation."""
    version: int | None = (await session.execute(ACTIVE_VERSION)).scalar()
    return version


async def last_activation_of(
    session: AsyncSession, version: int, *, before_id: int
) -> RuleSetActivation | None:
    query = (
        select(RuleSetActivation)
        .where(RuleSetActivation.version == version, RuleSetActivation.id < before_id)
        .order_by(RuleSetActivation.id.desc())
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def ruleset(session: AsyncSession, version: int) -> RuleSet | None:
    return await session.get(RuleSet, version)


async def rulesets(session: AsyncSession) -> list[RuleSet]:
    return list((await session.scalars(select(RuleSet).order_by(RuleSet.version.desc()))).all())


async def newest_version(session: AsyncSession) -> int:
    return int((await session.scalar(select(func.max(RuleSet.version)))) or 0)


# -- velocity -------------------------------------------------------------------------------
#
# `risk_activity` holds one row per transaction; `risk_velocity_hour` its running totals per
# customer and UTC hour, changed in the same transaction as the rows. An evaluation reads
# the totals (at most a month of hours) and, for the one hour the trailing 24-hour window
# starts inside, the rows of that hour; never all of a customer's transactions.
#
# Every statement here is on every evaluation's path: each is built once and run on the
# transaction's own connection (`in_transaction`), not through the session.

HOUR = dt.timedelta(hours=1)
_activity = cast(Table, Activity.__table__).c
_hours = cast(Table, VelocityHour.__table__).c


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Counted:
    """A transaction as the totals count it: its USD cents and time (voided ones count
    for nothing, so they are never `Counted`)."""

    amount_usd: int
    occurred_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Velocity:
    transactions_24h: int
    daily_usd: int
    monthly_usd: int
    own: Counted | None
    """The evaluated transaction's own earlier row, if it counts (excluded from the three
    figures; replaced when the evaluation records it again)."""


_IS_OWN = (
    _activity.customer_id == bindparam("customer_id"),
    _activity.transaction_id == bindparam("transaction_id"),
    _activity.voided.is_(False),
)


def _total_since(start: str, column: Any, name: str) -> Any:
    summed = func.sum(case((_hours.hour_start >= bindparam(start), column), else_=0))
    return func.coalesce(summed, 0).label(name)


# `whole_from` is the first hour wholly inside the trailing 24 hours; the hour before it is
# counted from its rows (`partial`). The own row's figures come along, to be taken out.
VELOCITY = Query(
    select(
        _total_since("whole_from", _hours.transactions, "transactions"),
        _total_since("day_start", _hours.amount_usd, "daily"),
        _total_since("month_start", _hours.amount_usd, "monthly"),
        select(func.count())
        .where(
            _activity.customer_id == bindparam("customer_id"),
            _activity.occurred_at > bindparam("since_24h"),
            _activity.occurred_at < bindparam("whole_from"),
            _activity.transaction_id != bindparam("transaction_id"),
            _activity.voided.is_(False),
        )
        .scalar_subquery()
        .label("partial"),
        select(_activity.amount_usd).where(*_IS_OWN).scalar_subquery().label("own_usd"),
        select(_activity.occurred_at).where(*_IS_OWN).scalar_subquery().label("own_at"),
    ).where(
        _hours.customer_id == bindparam("customer_id"),
        _hours.hour_start >= bindparam("earliest"),
    )
)
OWN = Query(select(_activity.amount_usd, _activity.occurred_at).where(*_IS_OWN))


def _bound(table: Table, prefix: str) -> dict[str, Any]:
    """Every column of `table` bound to a parameter named `prefix` + the column."""
    return {column.name: bindparam(prefix + column.name, type_=column.type) for column in table.c}


def _upsert(
    dialect: Any,
    table: Table,
    keys: list[Any],
    changes: Callable[[Any], dict[str, Any]],
    prefix: str,
) -> Any:
    """`dialect`'s INSERT into `table` that on a conflict of `keys` sets `changes(excluded)`;
    with `prefix`, every value bound to its own named parameter (for use in a CTE)."""
    statement = dialect.insert(table)
    if prefix:
        statement = statement.values(_bound(table, prefix))
    return statement.on_conflict_do_update(index_elements=keys, set_=changes(statement.excluded))


def _activity_upsert(dialect: Any, prefix: str = "") -> Any:
    """A repeated transaction replaces its amount, time and state (never counted twice)."""
    return _upsert(
        dialect,
        cast(Table, Activity.__table__),
        [_activity.customer_id, _activity.transaction_id],
        lambda new: {
            "amount_usd": new.amount_usd,
            "occurred_at": new.occurred_at,
            "voided": new.voided,
            "source": new.source,
        },
        prefix,
    )


def _hour_increment(dialect: Any, prefix: str = "") -> Any:
    """An hour's totals grow (or shrink) by the given amounts."""
    return _upsert(
        dialect,
        cast(Table, VelocityHour.__table__),
        [_hours.customer_id, _hours.hour_start],
        lambda new: {
            "transactions": _hours.transactions + new.transactions,
            "amount_usd": _hours.amount_usd + new.amount_usd,
        },
        prefix,
    )


def _upserts(dialect: Any) -> tuple[Query, Query]:
    """(the activity row's upsert, an hour's totals' increment) in `dialect`'s INSERT."""
    return Query(_activity_upsert(dialect)), Query(_hour_increment(dialect))


_UPSERTS = {"postgresql": _upserts(postgresql), "sqlite": _upserts(sqlite)}


async def lock_velocity(session: AsyncSession, customer_id: str) -> None:
    """Serialise the transactions that count or change the customer's velocity until each
    commits (kernel/db.py: lock_until_commit)."""
    await lock_until_commit(session, "risk-velocity", customer_id)


async def velocity(
    session: AsyncSession,
    customer_id: str,
    transaction_id: str,
    *,
    since_24h: dt.datetime,
    day_start: dt.datetime,
    month_start: dt.datetime,
) -> Velocity:
    """The customer's other transactions that were not voided: how many in the trailing
    24 hours (after `since_24h`), their USD cents since `day_start` and since `month_start`
    (both whole hours).

    Evaluations of one customer are serialised from here to commit (`lock_velocity`), so
    two payments sent at once cannot both fit under a limit only one of them fits under."""
    await lock_velocity(session, customer_id)
    whole_from = hour_of(since_24h) + HOUR
    rows = await in_transaction(
        session,
        VELOCITY,
        customer_id=customer_id,
        transaction_id=transaction_id,
        since_24h=since_24h,
        whole_from=whole_from,
        day_start=day_start,
        month_start=month_start,
        earliest=min(month_start, whole_from),
    )
    row = rows[0]
    count = int(row["transactions"]) + int(row["partial"])
    daily, monthly = int(row["daily"]), int(row["monthly"])
    own = None
    if row["own_usd"] is not None:
        own = Counted(int(row["own_usd"]), row["own_at"])  # aware: UTCDateTime's processor
        # Counted in the totals, not in `partial` (which leaves it out).
        if own.occurred_at >= whole_from:
            count -= 1
        if own.occurred_at >= day_start:
            daily -= own.amount_usd
        if own.occurred_at >= month_start:
            monthly -= own.amount_usd
    return Velocity(count, daily, monthly, own)


async def _count(
    session: AsyncSession, customer_id: str, changes: list[tuple[dt.datetime, int, int]]
) -> None:
    """Add (moment, transactions, USD cents) to the customer's hourly totals."""
    by_hour: dict[dt.datetime, tuple[int, int]] = {}
    for moment, transactions, amount_usd in changes:
        hour = hour_of(moment)
        before = by_hour.get(hour, (0, 0))
        by_hour[hour] = (before[0] + transactions, before[1] + amount_usd)
    increment = _UPSERTS[session.get_bind().dialect.name][1]
    for hour, (transactions, amount_usd) in by_hour.items():
        if transactions or amount_usd:
            await in_transaction(
                session,
                increment,
                customer_id=customer_id,
                hour_start=hour,
                transactions=transactions,
                amount_usd=amount_usd,
            )


async def counted(session: AsyncSession, customer_id: str, transaction_id: str) -> Counted | None:
    """The transaction's row if it counts."""
    rows = await in_transaction(
        session, OWN, customer_id=customer_id, transaction_id=transaction_id
    )
    return None if not rows else Counted(int(rows[0]["amount_usd"]), rows[0]["occurred_at"])


async def record_activity(
    session: AsyncSession, values: dict[str, Any], *, previous: Counted | bool | None = True
) -> None:
    """One row per (customer, transaction): a repeated evaluation or a later event updates
    the amount and time rather than counting the transaction twice. The hourly totals move
    with it. `previous`: the row's counted figures if the caller read them under the
    customer's velocity lock (`Velocity.own`); True to take the lock and read them here."""
    if previous is True:
        await lock_velocity(session, values["customer_id"])
        previous = await counted(session, values["customer_id"], values["transaction_id"])
    upsert = _UPSERTS[session.get_bind().dialect.name][0]
    await in_transaction(session, upsert, **values)
    changes: list[tuple[dt.datetime, int, int]] = []
    if isinstance(previous, Counted):
        changes.append((previous.occurred_at, -1, -previous.amount_usd))
    if not values["voided"]:
        changes.append((values["occurred_at"], 1, values["amount_usd"]))
    await _count(session, values["customer_id"], changes)


_CUSTOMERS_OF = select(_activity.customer_id).where(
    _activity.transaction_id == bindparam("transaction_id"), _activity.voided.is_(False)
)


async def void_activity(session: AsyncSession, transaction_id: str) -> int:
    """The transaction stops counting (a payment that failed or was cancelled). The rows
    this statement voided (RETURNING: a concurrent void of the same transaction gets none)
    leave the totals, under the customers' velocity locks, as evaluations take them."""
    customers = (await session.scalars(_CUSTOMERS_OF, {"transaction_id": transaction_id})).all()
    for customer_id in sorted(set(customers)):
        await lock_velocity(session, customer_id)
    statement = (
        update(Activity)
        .where(Activity.transaction_id == transaction_id, Activity.voided.is_(False))
        .values(voided=True)
        .returning(Activity.customer_id, Activity.amount_usd, Activity.occurred_at)
    )
    voided = (await session.execute(statement)).all()
    for customer_id, amount_usd, occurred_at in voided:
        await _count(session, customer_id, [(occurred_at, -1, -amount_usd)])
    return len(voided)


# -- decisions ------------------------------------------------------------------------------

DECISION_INSERT = Query(insert(cast(Table, Decision.__table__)))
# PostgreSQL: a new transaction's decision, activity row and hour's totals in one statement
# (one round trip instead of three; data-modifying CTEs on different tables).
DECISION_WITH_ACTIVITY = Query(
    _hour_increment(postgresql, "h_")
    .add_cte(
        insert(cast(Table, Decision.__table__))
        .values(_bound(cast(Table, Decision.__table__), "d_"))
        .cte("decision")
    )
    .add_cte(_activity_upsert(postgresql, "a_").cte("activity"))
)


async def record_decision(
    session: AsyncSession,
    decision: dict[str, Any],
    activity: dict[str, Any] | None,
    *,
    previous: Counted | None,
) -> None:
    """A decision and, for one that counts, its activity (as `record_activity`, with the
    figures `previous` read under the customer's velocity lock)."""
    if (
        activity is not None
        and previous is None
        and not activity["voided"]
        and session.get_bind().dialect.name == "postgresql"
    ):
        hour = {
            "customer_id": activity["customer_id"],
            "hour_start": hour_of(activity["occurred_at"]),
            "transactions": 1,
            "amount_usd": activity["amount_usd"],
        }
        parameters = {f"d_{name}": value for name, value in decision.items()}
        parameters |= {f"a_{name}": value for name, value in activity.items()}
        parameters |= {f"h_{name}": value for name, value in hour.items()}
        await in_transaction(session, DECISION_WITH_ACTIVITY, **parameters)
        return
    await in_transaction(session, DECISION_INSERT, **decision)
    if activity is not None:
        await record_activity(session, activity, previous=previous)


async def decision(session: AsyncSession, decision_id: str) -> Decision | None:
    return await session.get(Decision, decision_id)


async def decisions_to_replay(
    session: AsyncSession, since: dt.datetime | None, limit: int
) -> Sequence[Decision]:
    query = select(Decision).order_by(Decision.created_at.desc(), Decision.id.desc()).limit(limit)
    if since is not None:
        query = query.where(Decision.created_at >= since)
    return (await session.scalars(query)).all()


# -- cases ----------------------------------------------------------------------------------


async def case_for_update(session: AsyncSession, case_id: str) -> Case | None:
    return await session.get(Case, case_id, with_for_update=True)


async def cases(
    session: AsyncSession, status: str | None, limit: int, cursor: str | None
) -> tuple[list[Case], str | None]:
    query = select(Case).order_by(Case.created_at, Case.id).limit(limit + 1)
    if status is not None:
        query = query.where(Case.status == status)
    if cursor is not None:
        after, last_id = decode_cursor(cursor)
        query = query.where(
            (Case.created_at > after) | ((Case.created_at == after) & (Case.id > last_id))
        )
    rows = list((await session.scalars(query)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)


async def has_activity(session: AsyncSession, transaction_id: str) -> bool:
    query = select(Activity.transaction_id).where(Activity.transaction_id == transaction_id)
    return (await session.execute(query.limit(1))).first() is not None
