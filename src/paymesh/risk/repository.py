"""Every query of the risk service. Callers own the transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    bindparam,
    case,
    column,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import (
    UTCDateTime,
    is_postgres,
    lock_until_commit,
    locks_not_held,
    note_locks_held,
)
from paymesh.kernel.jsonutil import recordset_dumps
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


ACTIVE_VERSION = Query(
    select(RuleSetActivation.version).order_by(RuleSetActivation.id.desc()).limit(1)
)


async def active_version(session: AsyncSession) -> int | None:
    """The active version: one column of one row, read inside a batch of evaluations once
    the cached one is a second old. On the driver, so that the group commit's session is
    not begun for it (kernel/held_connection.py)."""
    rows = await in_transaction(session, ACTIVE_VERSION)
    return int(rows[0]["version"]) if rows else None


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


VELOCITY_LOCKS = "risk-velocity"
"""The scope of the customers' velocity locks (kernel/db.py: advisory_lock_key)."""


async def lock_velocity(session: AsyncSession, customer_id: str) -> None:
    """Serialise the transactions that count or change the customer's velocity until each
    commits (kernel/db.py: lock_until_commit)."""
    await lock_until_commit(session, VELOCITY_LOCKS, customer_id)


@dataclass(frozen=True, slots=True)
class Windows:
    """The velocity windows of one instant: the trailing 24 hours (after `since_24h`), the
    UTC day and the calendar month (from `day_start` and `month_start`, whole hours)."""

    since_24h: dt.datetime
    day_start: dt.datetime
    month_start: dt.datetime

    @property
    def whole_from(self) -> dt.datetime:
        """The first hour wholly inside the trailing 24 hours."""
        return hour_of(self.since_24h) + HOUR

    def figures(self, counted: Counted | None) -> tuple[int, int, int]:
        """What a transaction that counts adds to (transactions in the trailing 24 hours,
        USD cents today, USD cents this month): the three figures of a `Velocity`."""
        if counted is None:
            return 0, 0, 0
        at, usd = counted.occurred_at, counted.amount_usd
        return (
            int(at > self.since_24h),
            usd if at >= self.day_start else 0,
            (usd if at >= self.month_start else 0),
        )

    def parameters(self) -> dict[str, dt.datetime]:
        whole_from = self.whole_from
        return {
            "since_24h": self.since_24h,
            "whole_from": whole_from,
            "day_start": self.day_start,
            "month_start": self.month_start,
            "earliest": min(self.month_start, whole_from),
        }


Pair = tuple[str, str]
"""(customer id, transaction id)."""

# PostgreSQL: the customers' velocity locks taken and the VELOCITY of many (customer,
# transaction) pairs read, in one round trip (migration 0004: the read is a statement of
# its own inside the function, so its snapshot is taken with the locks held).
LOCKED_VELOCITIES = Query(
    text(
        """
SELECT v_transactions AS transactions, v_daily AS daily, v_monthly AS monthly,
    v_partial AS partial, v_own_usd AS own_usd, v_own_at AS own_at
FROM risk_locked_velocities(
    CAST(:locks AS bigint[]), CAST(:customers AS text[]), CAST(:transactions AS text[]),
    :since_24h, :whole_from, :day_start, :month_start, :earliest)
"""
    )
    .bindparams(
        bindparam("locks", type_=postgresql.ARRAY(BigInteger)),
        bindparam("customers", type_=postgresql.ARRAY(String)),
        bindparam("transactions", type_=postgresql.ARRAY(String)),
        *(
            bindparam(name, type_=UTCDateTime())
            for name in ("since_24h", "whole_from", "day_start", "month_start", "earliest")
        ),
    )
    .columns(
        column("transactions", BigInteger),
        column("daily", BigInteger),
        column("monthly", BigInteger),
        column("partial", BigInteger),
        column("own_usd", BigInteger),
        column("own_at", UTCDateTime()),
    )
)


async def velocities(
    session: AsyncSession, pairs: Sequence[Pair], windows: Windows
) -> dict[Pair, Velocity]:
    """For each (customer, transaction): the customer's other transactions that were not
    voided, how many in the trailing 24 hours, their USD cents today and this month, and
    the transaction's own row if it counts.

    The customers' velocity locks are taken first: evaluations of one customer are
    serialised from here to commit, so two payments sent at once cannot both fit under a
    limit only one of them fits under. On PostgreSQL the locks and the reads of all the
    pairs are one round trip (risk_locked_velocities, migration 0004)."""
    unique = list(dict.fromkeys(pairs))
    if not unique:  # every evaluation of the batch was a key's replay or refusal
        return {}
    parameters = windows.parameters()
    if is_postgres(session):
        locks = locks_not_held(session, VELOCITY_LOCKS, (customer for customer, _ in unique))
        rows = await in_transaction(
            session,
            LOCKED_VELOCITIES,
            locks=locks,
            customers=[customer for customer, _ in unique],
            transactions=[transaction for _, transaction in unique],
            **parameters,
        )
        note_locks_held(session, locks)
    else:  # SQLite: the writing transaction is alone already; no lock to take
        rows = []
        for customer, transaction in unique:
            found = await in_transaction(
                session, VELOCITY, customer_id=customer, transaction_id=transaction, **parameters
            )
            rows.append(found[0])
    return {pair: _velocity(row, windows) for pair, row in zip(unique, rows, strict=True)}


def _velocity(row: dict[str, Any], windows: Windows) -> Velocity:
    count = int(row["transactions"]) + int(row["partial"])
    daily, monthly = int(row["daily"]), int(row["monthly"])
    own = None
    if row["own_usd"] is not None:
        own = Counted(int(row["own_usd"]), row["own_at"])  # aware: UTCDateTime's processor
        # Counted in the hours' totals, not in `partial` (which leaves it out).
        if own.occurred_at >= windows.whole_from:
            count -= 1
        if own.occurred_at >= windows.day_start:
            daily -= own.amount_usd
        if own.occurred_at >= windows.month_start:
            monthly -= own.amount_usd
    return Velocity(count, daily, monthly, own)


class BatchVelocity:
    """The velocities of a batch of evaluations decided in one transaction at one instant:
    read for all of them before any is written (`velocities`), then each evaluation's
    recorded transaction laid over the later ones', as if each had been read after the
    ones before it were written."""

    def __init__(self, windows: Windows, read: dict[Pair, Velocity]) -> None:
        self.windows = windows
        self._read = read
        self._recorded: dict[Pair, tuple[Counted, tuple[int, int, int]]] = {}
        """Each transaction recorded in the batch: its row now, and what that changed in
        its customer's figures (the row now less its stored row)."""
        self._changed: dict[str, list[int]] = {}
        """Per customer, the sum of those changes."""

    def of(self, pair: Pair) -> Velocity:
        stored = self._read[pair]
        change = self._changed.get(pair[0])
        if change is None:
            return stored
        count, daily, monthly = (
            stored.transactions_24h + change[0],
            stored.daily_usd + change[1],
            stored.monthly_usd + change[2],
        )
        own = stored.own
        recorded = self._recorded.get(pair)
        if recorded is not None:  # the transaction's own row: not among the others
            own, (n, usd_day, usd_month) = recorded[0], recorded[1]
            count, daily, monthly = count - n, daily - usd_day, monthly - usd_month
        return Velocity(count, daily, monthly, own)

    def record(self, pair: Pair, counted: Counted) -> None:
        """The transaction's row is now `counted` (its stored row, if any, replaced)."""
        figures = self.windows.figures
        now, before = figures(counted), figures(self._read[pair].own)
        change = (now[0] - before[0], now[1] - before[1], now[2] - before[2])
        total = self._changed.setdefault(pair[0], [0, 0, 0])
        earlier = self._recorded.get(pair)
        if earlier is not None:
            total[:] = [t - e for t, e in zip(total, earlier[1], strict=True)]
        total[:] = [t + c for t, c in zip(total, change, strict=True)]
        self._recorded[pair] = (counted, change)


async def _count(
    session: AsyncSession, customer_id: str, changes: list[tuple[dt.datetime, int, int]]
) -> None:
    """Add (moment, transactions, USD cents) to the customer's hourly totals."""
    by_hour: dict[tuple[str, dt.datetime], list[int]] = {}
    for moment, transactions, amount_usd in changes:
        total = by_hour.setdefault((customer_id, hour_of(moment)), [0, 0])
        total[0] += transactions
        total[1] += amount_usd
    await _add_to_hours(session, by_hour)


async def _add_to_hours(
    session: AsyncSession, changes: dict[tuple[str, dt.datetime], list[int]]
) -> None:
    """Add [transactions, USD cents] to each (customer, hour)'s totals, one statement per
    hour that changes."""
    increment = _UPSERTS[session.get_bind().dialect.name][1]
    for (customer_id, hour), (transactions, amount_usd) in changes.items():
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


def _recordset(table: Table, parameter: str) -> str:
    """`json_to_recordset(:parameter)` typed as `table`'s columns: a batch's rows of the
    table in one JSON parameter (kernel/jsonutil.py: recordset_dumps)."""
    dialect = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
    columns = ", ".join(
        f"{column.name} {column.type.compile(dialect=dialect)}" for column in table.c
    )
    return f"json_to_recordset(CAST(:{parameter} AS json)) AS {parameter}({columns})"


def _names(table: Table) -> str:
    return ", ".join(column.name for column in table.c)


_DECISIONS, _ACTIVITY, _HOURS = (
    cast(Table, model.__table__) for model in (Decision, Activity, VelocityHour)
)
_BATCH_PARAMETERS = ("decisions", "activities", "hours")
# PostgreSQL: a batch's decisions, their activity rows and the hours' totals they change in
# one statement (data-modifying CTEs on different tables), whatever the batch's size: each
# table's rows travel as one JSON parameter. Each holds a key at most once (an activity row
# per transaction, a total per hour), as ON CONFLICT DO UPDATE requires.
DECISIONS_WITH_ACTIVITY = Query(
    text(
        f"""
WITH decision AS (
    INSERT INTO {_DECISIONS.name} ({_names(_DECISIONS)})
    SELECT {_names(_DECISIONS)} FROM {_recordset(_DECISIONS, "decisions")}
), activity AS (
    INSERT INTO {_ACTIVITY.name} ({_names(_ACTIVITY)})
    SELECT {_names(_ACTIVITY)} FROM {_recordset(_ACTIVITY, "activities")}
    ON CONFLICT (customer_id, transaction_id) DO UPDATE SET
        amount_usd = excluded.amount_usd, occurred_at = excluded.occurred_at,
        voided = excluded.voided, source = excluded.source
)
INSERT INTO {_HOURS.name} ({_names(_HOURS)})
SELECT {_names(_HOURS)} FROM {_recordset(_HOURS, "hours")}
ON CONFLICT (customer_id, hour_start) DO UPDATE SET
    transactions = {_HOURS.name}.transactions + excluded.transactions,
    amount_usd = {_HOURS.name}.amount_usd + excluded.amount_usd
"""
    ).bindparams(
        *(bindparam(name, type_=String()) for name in ("decisions", "activities", "hours"))
    )
)


@dataclass(frozen=True, slots=True)
class Recorded:
    """A decision to store; for one that counts, its transaction's activity row and the
    row it replaces (`Velocity.own`, read under the customer's velocity lock)."""

    decision: dict[str, Any]
    activity: dict[str, Any] | None = None
    previous: Counted | None = None


async def record_decisions(session: AsyncSession, batch: Sequence[Recorded]) -> None:
    """Decisions and the activity of those that count, in order (a transaction recorded
    twice keeps the later row); the hourly totals move with the rows. On PostgreSQL one
    statement for the whole batch; on SQLite, where a statement costs no round trip, one
    per row."""
    if not batch:  # every evaluation of the batch was a key's replay or refusal
        return
    activities: dict[Pair, dict[str, Any]] = {}
    hours: dict[tuple[str, dt.datetime], list[int]] = {}
    for recorded in batch:
        activity = recorded.activity
        if activity is None:
            continue
        customer_id = activity["customer_id"]
        activities[customer_id, activity["transaction_id"]] = activity
        if recorded.previous is not None:
            total = hours.setdefault((customer_id, hour_of(recorded.previous.occurred_at)), [0, 0])
            total[0] -= 1
            total[1] -= recorded.previous.amount_usd
        if not activity["voided"]:
            total = hours.setdefault((customer_id, hour_of(activity["occurred_at"])), [0, 0])
            total[0] += 1
            total[1] += activity["amount_usd"]
    changed = {key: total for key, total in hours.items() if total != [0, 0]}
    if not is_postgres(session):
        for recorded in batch:
            await in_transaction(session, DECISION_INSERT, **recorded.decision)
        for activity in activities.values():
            await in_transaction(session, _UPSERTS["sqlite"][0], **activity)
        await _add_to_hours(session, changed)
        return
    hour_rows = [
        {
            "customer_id": customer_id,
            "hour_start": hour,
            "transactions": transactions,
            "amount_usd": amount_usd,
        }
        for (customer_id, hour), (transactions, amount_usd) in changed.items()
    ]
    parameters = {
        "decisions": recordset_dumps([recorded.decision for recorded in batch]),
        "activities": recordset_dumps(list(activities.values())),
        "hours": recordset_dumps(hour_rows),
    }
    await in_transaction(session, DECISIONS_WITH_ACTIVITY, **parameters)


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
