"""Every query of the risk service. Callers own the transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import is_postgres, lock_until_commit
from paymesh.kernel.pagination import decode_cursor, encode_cursor
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

HOUR = dt.timedelta(hours=1)
_activity = Activity.__table__.c
_hours = VelocityHour.__table__.c


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


def _own(column: Any) -> Any:
    return (
        select(column)
        .where(
            _activity.customer_id == bindparam("customer_id"),
            _activity.transaction_id == bindparam("transaction_id"),
            _activity.voided.is_(False),
        )
        .scalar_subquery()
    )


# Built once (a statement costs more to build than SQLite takes to run it). `whole_from` is
# the first hour wholly inside the trailing 24 hours; the hour before it is counted from its
# rows (`partial`). The own row's figures come along, to be taken out in Python.
VELOCITY = select(
    func.coalesce(
        func.sum(
            case((_hours.hour_start >= bindparam("whole_from"), _hours.transactions), else_=0)
        ),
        0,
    ),
    func.coalesce(
        func.sum(case((_hours.hour_start >= bindparam("day_start"), _hours.amount_usd), else_=0)),
        0,
    ),
    func.coalesce(
        func.sum(case((_hours.hour_start >= bindparam("month_start"), _hours.amount_usd), else_=0)),
        0,
    ),
    select(func.count())
    .where(
        _activity.customer_id == bindparam("customer_id"),
        _activity.occurred_at > bindparam("since_24h"),
        _activity.occurred_at < bindparam("whole_from"),
        _activity.transaction_id != bindparam("transaction_id"),
        _activity.voided.is_(False),
    )
    .scalar_subquery(),
    _own(_activity.amount_usd),
    _own(_activity.occurred_at),
).where(
    _hours.customer_id == bindparam("customer_id"),
    _hours.hour_start >= bindparam("earliest"),
)


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

    Evaluations of one customer are serialised from here to commit, so two payments sent
    at once cannot both fit under a limit only one of them fits under: on PostgreSQL by a
    transaction-scoped advisory lock per customer; on SQLite by its one writer line (this
    runs in the writer's transaction)."""
    await lock_until_commit(session, "risk-velocity", customer_id)
    whole_from = hour_of(since_24h) + HOUR
    values = {
        "customer_id": customer_id,
        "transaction_id": transaction_id,
        "since_24h": since_24h,
        "whole_from": whole_from,
        "day_start": day_start,
        "month_start": month_start,
        "earliest": min(month_start, whole_from),
    }
    row = (await session.execute(VELOCITY, values)).one()
    count, daily, monthly = int(row[0]) + int(row[3]), int(row[1]), int(row[2])
    own = None if row[4] is None else Counted(int(row[4]), _aware(row[5]))
    if own is not None:  # counted in the totals, not in `partial` (which excludes it)
        if own.occurred_at >= whole_from:
            count -= 1
        if own.occurred_at >= day_start:
            daily -= own.amount_usd
        if own.occurred_at >= month_start:
            monthly -= own.amount_usd
    return Velocity(count, daily, monthly, own)


def _aware(value: Any) -> dt.datetime:
    """A scalar subquery's datetime comes back as the driver gives it (SQLite: text)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    moment: dt.datetime = value
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _add_to_hour(session: AsyncSession) -> Any:
    insert = postgresql.insert if is_postgres(session) else sqlite.insert
    statement = insert(VelocityHour)
    return statement.on_conflict_do_update(
        index_elements=[VelocityHour.customer_id, VelocityHour.hour_start],
        set_={
            "transactions": _hours.transactions + statement.excluded.transactions,
            "amount_usd": _hours.amount_usd + statement.excluded.amount_usd,
        },
    )


async def _count(
    session: AsyncSession, customer_id: str, changes: list[tuple[dt.datetime, int, int]]
) -> None:
    """Add (moment, transactions, USD cents) to the customer's hourly totals."""
    by_hour: dict[dt.datetime, tuple[int, int]] = {}
    for moment, transactions, amount_usd in changes:
        hour = hour_of(moment)
        before = by_hour.get(hour, (0, 0))
        by_hour[hour] = (before[0] + transactions, before[1] + amount_usd)
    rows = [
        {"customer_id": customer_id, "hour_start": hour, "transactions": n, "amount_usd": usd}
        for hour, (n, usd) in by_hour.items()
        if n or usd
    ]
    if rows:
        await session.execute(_add_to_hour(session), rows)


_OWN_ROW = select(_activity.amount_usd, _activity.occurred_at).where(
    _activity.customer_id == bindparam("customer_id"),
    _activity.transaction_id == bindparam("transaction_id"),
    _activity.voided.is_(False),
)


async def counted(session: AsyncSession, customer_id: str, transaction_id: str) -> Counted | None:
    """The transaction's row if it counts."""
    found = (
        await session.execute(
            _OWN_ROW, {"customer_id": customer_id, "transaction_id": transaction_id}
        )
    ).first()
    return None if found is None else Counted(int(found[0]), found[1])


async def record_activity(
    session: AsyncSession, values: dict[str, Any], *, previous: Counted | bool | None = True
) -> None:
    """One row per (customer, transaction): a repeated evaluation or a later event updates
    the amount and time rather than counting the transaction twice. The hourly totals move
    with it. `previous`: the row's counted figures if the caller already read them
    (`Velocity.own`); True to read them here."""
    if previous is True:
        await lock_until_commit(session, "risk-velocity", values["customer_id"])
        previous = await counted(session, values["customer_id"], values["transaction_id"])
    insert = postgresql.insert if is_postgres(session) else sqlite.insert
    statement = insert(Activity).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[Activity.customer_id, Activity.transaction_id],
        set_={
            "amount_usd": statement.excluded.amount_usd,
            "occurred_at": statement.excluded.occurred_at,
            "voided": statement.excluded.voided,
            "source": statement.excluded.source,
        },
    )
    await session.execute(statement)
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
        await lock_until_commit(session, "risk-velocity", customer_id)
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
