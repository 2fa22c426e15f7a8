"""Every query of the risk service. Callers own the transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import is_postgres, lock_until_commit
from paymesh.kernel.pagination import decode_cursor, encode_cursor
from paymesh.risk.models import Activity, Case, Decision, RuleSet, RuleSetActivation

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

_activity = Activity.__table__.c
# Built once (a statement costs more to build than SQLite takes to run it): the three
# figures in one pass over the customer's rows since the earlier of the 24-hour window's
# and the month's start.
VELOCITY = select(
    func.coalesce(func.sum(case((_activity.occurred_at > bindparam("since_24h"), 1), else_=0)), 0),
    func.coalesce(
        func.sum(
            case((_activity.occurred_at >= bindparam("day_start"), _activity.amount_usd), else_=0)
        ),
        0,
    ),
    func.coalesce(
        func.sum(
            case(
                (_activity.occurred_at >= bindparam("month_start"), _activity.amount_usd),
                else_=0,
            )
        ),
        0,
    ),
).where(
    _activity.customer_id == bindparam("customer_id"),
    _activity.transaction_id != bindparam("transaction_id"),
    _activity.voided.is_(False),
    _activity.occurred_at >= bindparam("earliest"),
)


async def velocity(
    session: AsyncSession,
    customer_id: str,
    transaction_id: str,
    *,
    since_24h: dt.datetime,
    day_start: dt.datetime,
    month_start: dt.datetime,
) -> tuple[int, int, int]:
    """(transactions in the trailing 24 h, USD cents used today, this month), counting the
    customer's other transactions that were not voided.

    Evaluations of one customer are serialised from here to commit, so two payments sent
    at once cannot both fit under a limit only one of them fits under: on PostgreSQL by a
    transaction-scoped advisory lock per customer; on SQLite by its one writer line (this
    runs in the writer's transaction)."""
    await lock_until_commit(session, "risk-velocity", customer_id)
    values = {
        "customer_id": customer_id,
        "transaction_id": transaction_id,
        "since_24h": since_24h,
        "day_start": day_start,
        "month_start": month_start,
        "earliest": min(month_start, since_24h),
    }
    count, daily, monthly = (await session.execute(VELOCITY, values)).one()
    return int(count), int(daily), int(monthly)


async def record_activity(session: AsyncSession, values: dict[str, Any]) -> None:
    """One row per (customer, transaction): a repeated evaluation or a later event updates
    the amount and time rather than counting the transaction twice."""
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


async def void_activity(session: AsyncSession, transaction_id: str) -> int:
    statement = (
        update(Activity)
        .where(Activity.transaction_id == transaction_id, Activity.voided.is_(False))
        .values(voided=True)
    )
    result: Any = await session.execute(statement)
    return int(result.rowcount or 0)


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
