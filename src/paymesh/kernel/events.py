"""Events: CloudEvents 1.0 envelopes, a transactional outbox, a relay, idempotent consumers.

Flow: a service writes its change and `Outbox.add(...)` in one transaction; after commit
the `OutboxRelay` leases unpublished rows, hands them to the `EventBus`, and marks them
published. Delivery is at least once. Each `Consumer` records the event id in its inbox in
the same transaction as its effect, so a redelivered event has no second effect; a handler
that keeps failing is written to the dead-letter table with its error.

Group commit: the relay hands each leased batch to `EventBus.publish_batch`. A consumer
built with a `batch_handler` takes its matching events of the batch in ONE transaction
(inbox rows for all, the handler on those not seen before); if that transaction fails, it
falls back to the per-event path, so one poison event still only dead-letters itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ARRAY, String, and_, any_, bindparam, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from paymesh.kernel.db import (
    Database,
    any_due,
    due_keys,
    insert_ignoring_conflicts,
    mark_for_commit,
    utcnow,
)
from paymesh.kernel.event_catalog import EventCatalog
from paymesh.kernel.ids import new_id
from paymesh.kernel.metrics import (
    CONSUMER_ATTEMPTS,
    CONSUMER_DEAD_LETTERS,
    CONSUMER_FAILURES,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST,
    OUTBOX_PUBLISHED,
)
from paymesh.kernel.observability import request_id_var, traceparent_var
from paymesh.kernel.tables import KernelTables
from paymesh.kernel.tracing import mark_failed, span, tracing_on

log = structlog.get_logger("paymesh.events")


class CloudEvent(BaseModel):
    """CloudEvents 1.0 JSON envelope. Extension attributes are kept (`model_extra`): events
    written during a request carry `actor`, `actorclient`, `actorroles` (who made the
    change), `requestid` and `traceparent` (the distributed-tracing extension)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: new_id("evt"))
    source: str
    type: str
    time: dt.datetime = Field(default_factory=utcnow)
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)


EventHandler = Callable[[CloudEvent], Awaitable[None]]
BatchEventHandler = Callable[[Sequence[CloudEvent]], Awaitable[None]]
ConsumerHandler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
BatchConsumerHandler = Callable[[AsyncSession, Sequence[CloudEvent]], Awaitable[None]]
"""Handles events (in delivery order, each new to the consumer) in the caller's transaction."""


class EventBus(Protocol):
    """What the relay publishes to and consumers subscribe on.

    Adapters for RabbitMQ, NATS JetStream and Kafka implement the same methods; `publish`
    returns only once the bus has accepted the event (or, in process, once every
    subscriber has handled it), `publish_batch` once it has accepted them all. An adapter
    that subclasses this Protocol inherits `publish_batch` as a loop over `publish`.
    """

    async def publish(self, event: CloudEvent) -> None: ...

    async def publish_batch(self, events: Sequence[CloudEvent]) -> None:
        """Publish `events` in their order. A subscriber with a batch handler may get its
        matching events at once; every subscriber sees them in this order."""
        for event in events:
            await self.publish(event)

    def wants(self, event_type: str) -> bool:
        """False when no one can receive this type (the relay then only marks it sent)."""
        ...

    def subscribe(
        self,
        name: str,
        patterns: Sequence[str],
        handler: EventHandler,
        batch_handler: BatchEventHandler | None = None,
    ) -> None:
        """`handler` takes one event; `batch_handler`, when given, takes a run of them
        (in order) and is what `publish_batch` uses."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class _Subscription:
    name: str
    patterns: tuple[str, ...]
    handler: EventHandler
    batch_handler: BatchEventHandler | None = None

    def matches(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.patterns)


OUTBOX_WRITTEN = "outbox_written"
"""The `mark_for_commit` mark of a transaction that wrote outbox rows (wakes the relay)."""


POLL_JITTER = 0.25
"""Each wait between polls is `seconds` ± this share, at random. In one process a dozen
workers (each service's outbox relay, the queues) start together with the same interval:
without jitter their polls stay in step, and a request arriving then waits for all of
them at once. Measured (`GET /health`, one request at a time, `paymesh up --demo`): p99
1.7-2.9 ms with the relays polling every 0.5 s, 0.9-1.1 ms with them every 30 s."""
_JITTER = random.Random()  # noqa: S311 - spreads polls in time; not a secret
"""The jitter's own generator: the module's shared one belongs to the application (and
Hypothesis checks that strategies never see it drawn from behind their back)."""


async def woken(wake: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` (± `POLL_JITTER`) for `wake` (a commit of new work, or a
    stop); clear it and say whether it came: a worker's wait between polls."""
    try:
        spread = _JITTER.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
        async with asyncio.timeout(seconds * spread):
            await wake.wait()
    except TimeoutError:
        return False
    finally:
        wake.clear()
    return True


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, returning early when `stopping` is set.

    Workers stop by flag, not by cancellation: cancelling a task in the middle of a
    database call can leave a pooled connection half-used, and Python 3.11's wait_for can
    lose a cancellation outright."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()


@dataclass
class InProcessBus(EventBus):
    """The embedded shape's bus: publish awaits every matching subscriber, in order."""

    subscriptions: list[_Subscription] = field(default_factory=list)

    async def publish(self, event: CloudEvent) -> None:
        for subscription in self.subscriptions:
            if subscription.matches(event.type):
                await subscription.handler(event)

    async def publish_batch(self, events: Sequence[CloudEvent]) -> None:
        """Each subscriber in turn gets its matching events, in order: at once when it has
        a batch handler, else one by one."""
        for subscription in list(self.subscriptions):
            matching = [event for event in events if subscription.matches(event.type)]
            if not matching:
                continue
            if subscription.batch_handler is not None and len(matching) > 1:
                await subscription.batch_handler(matching)
                continue
            for event in matching:
                await subscription.handler(event)

    def wants(self, event_type: str) -> bool:
        return any(subscription.matches(event_type) for subscription in self.subscriptions)

    def subscribe(
        self,
        name: str,
        patterns: Sequence[str],
        handler: EventHandler,
        batch_handler: BatchEventHandler | None = None,
    ) -> None:
        self.subscriptions.append(_Subscription(name, tuple(patterns), handler, batch_handler))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class Outbox:
    """Writes events in the caller's transaction; they leave only after it commits."""

    def __init__(
        self, service: str, tables: KernelTables, catalog: EventCatalog | None = None
    ) -> None:
        self.source = f"/paymesh/{service}"
        self.catalog = catalog
        """When set (`PAYMESH_EVENTS_CHECK_PAYLOADS`), every event is checked against the
        service's declared event types before it is written."""
        self.table = tables.outbox
        self._insert = tables.outbox.insert()  # built once: a statement costs to build
        self.listeners: list[Callable[[], None]] = []

    def committed(self) -> None:
        """Tell the relay that events were committed outside a `Database.transaction()`."""
        for listener in self.listeners:
            listener()

    async def add(
        self,
        session: AsyncSession,
        type: str,  # noqa: A002 - CloudEvents attribute name
        data: dict[str, Any],
        subject: str | None = None,
    ) -> CloudEvent:
        envelope = self.envelope(type, data, subject)
        envelope.update(request_context(session))
        await self.add_envelopes(session, [envelope])
        return CloudEvent.model_validate(envelope)

    async def add_envelopes(
        self, session: AsyncSession | AsyncConnection, envelopes: Sequence[dict[str, Any]]
    ) -> None:
        """Write `envelope()` dicts in the caller's transaction."""
        if not envelopes:
            return
        rows = self.envelope_rows(envelopes)
        # One row goes as one parameter set: a list would take the executemany path.
        await session.execute(self._insert, rows[0] if len(rows) == 1 else rows)
        if isinstance(session, AsyncSession):
            # Database.transaction() wakes the relay after commit; other callers use
            # committed().
            mark_for_commit(session, OUTBOX_WRITTEN)

    def event(self, type: str, data: dict[str, Any], subject: str | None = None) -> CloudEvent:  # noqa: A002
        return CloudEvent(source=self.source, type=type, subject=subject, data=data)

    def envelope(
        self,
        type: str,  # noqa: A002 - CloudEvents attribute name
        data: dict[str, Any],
        subject: str | None = None,
        time: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """A CloudEvent as the JSON dict `CloudEvent.model_dump(mode="json")` gives, built
        without a model: for writers that emit thousands of events a second."""
        if self.catalog is not None:
            self.catalog.check(type, data)
        when = (time or utcnow()).astimezone(dt.UTC)
        return {
            "specversion": "1.0",
            "id": new_id("evt"),
            "source": self.source,
            "type": type,
            "time": when.isoformat().replace("+00:00", "Z"),
            "subject": subject,
            "datacontenttype": "application/json",
            "data": data,
        }

    def envelope_rows(self, envelopes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Outbox rows for `envelope()` dicts."""
        return [
            {
                "id": envelope["id"],
                "type": envelope["type"],
                "subject": envelope["subject"],
                "envelope": envelope,
                "created_at": dt.datetime.fromisoformat(envelope["time"]),
            }
            for envelope in envelopes
        ]


MAX_SPAN_LINKS = 128
"""Links from a batch's span to the traces of its events, at most."""


def traceparent_of(event: CloudEvent) -> str:
    """The event's CloudEvents distributed-tracing extension (empty when it has none)."""
    value = (event.model_extra or {}).get("traceparent")
    return value if isinstance(value, str) else ""


def trace_links(events: Sequence[CloudEvent]) -> list[str]:
    """The traceparents a batch's span links to; none (and no work) when tracing is off."""
    if not tracing_on():
        return []
    return [traceparent_of(event) for event in events[:MAX_SPAN_LINKS]]


def request_context(session: AsyncSession) -> dict[str, str]:
    """CloudEvents extension attributes of the request the session serves: who acted (the
    unit of work records the verified caller in `session.info["actor"]`), its request id
    and trace. Empty outside a request (jobs, consumers), so those events stay as they were."""
    context: dict[str, str] = {}
    actor = session.info.get("actor")
    if actor is not None:
        context["actor"] = actor.subject
        if actor.client_id:
            context["actorclient"] = actor.client_id
        if actor.roles:
            context["actorroles"] = " ".join(sorted(actor.roles))
    request_id = request_id_var.get()
    if request_id:
        context["requestid"] = request_id
    traceparent = traceparent_var.get()
    if traceparent:
        context["traceparent"] = traceparent
    return context


def _id_in(column: Any, postgres: bool) -> Any:
    """`column` is one of the list given as the statement's parameter `ids`: `= ANY(:ids)`
    on PostgreSQL (one prepared statement whatever the number of ids), an expanding IN on
    SQLite."""
    if postgres:
        return column == any_(bindparam("ids", type_=ARRAY(String)))
    return column.in_(bindparam("ids", expanding=True))


class OutboxRelay:
    """Moves committed outbox rows to the bus. Any number of relays may run at once.

    Rows are leased (`locked_until`) in a short transaction, published outside it, then
    marked published, so a relay that dies mid-way leaves rows that another relay picks up
    when the lease ends: at-least-once delivery, never a lost event.
    """

    def __init__(
        self,
        database: Database,
        tables: KernelTables,
        bus: EventBus,
        *,
        batch_size: int = 100,
        interval_seconds: float = 0.5,
        lease_seconds: float = 30.0,
        retention_seconds: float = 0.0,
        service: str | None = None,
    ) -> None:
        self.database = database
        self.table = tables.outbox
        self.service = service or database.service
        self._backlog = OUTBOX_BACKLOG.labels(self.service)
        self._oldest = OUTBOX_OLDEST.labels(self.service)
        self._published = OUTBOX_PUBLISHED.labels(self.service)
        self._measured_at = 0.0
        self.bus = bus
        self.retention_seconds = retention_seconds
        self.batch_size = batch_size
        self.interval_seconds = interval_seconds
        self.lease_seconds = lease_seconds
        self.debounce_seconds = min(0.05, interval_seconds)
        self._wake = asyncio.Event()
        self.stopping = asyncio.Event()
        database.wake_on_commit(OUTBOX_WRITTEN, self._wake.set)
        # The relay's statements, built once (parameters `now`, `until`, `ids`): building
        # them on every run cost more than running them (py-spy, bench/risk).
        table, postgres = self.table, database.is_postgres

        def moment(name: str) -> Any:
            return bindparam(name, type_=table.c.locked_until.type)

        is_due = (
            table.c.published_at.is_(None),
            or_(table.c.locked_until.is_(None), table.c.locked_until < moment("now")),
        )
        due = due_keys(
            table,
            *is_due,
            order_by=(table.c.created_at, table.c.id),
            limit=batch_size,
            postgres=postgres,
        )
        self._any_due = any_due(table, *is_due)  # asked before a lease's transaction
        # One statement claims and reads the batch (UPDATE ... RETURNING on both databases).
        self._lease_due = (
            update(table)
            .where(table.c.id.in_(due))
            .values(locked_until=moment("until"), attempts=table.c.attempts + 1)
            .returning(table.c.id, table.c.type)
        )
        self._envelopes = (
            select(table.c.id, table.c.envelope)
            .where(_id_in(table.c.id, postgres))
            .order_by(table.c.created_at, table.c.id)
        )
        self._delete_published = table.delete().where(_id_in(table.c.id, postgres))
        self._mark_published_rows = (
            update(table)
            .where(_id_in(table.c.id, postgres))
            .values(published_at=moment("now"), locked_until=None)
        )

    def wake(self) -> None:
        self._wake.set()

    async def _lease(self, *, due_known: bool) -> list[dict[str, Any]]:
        now = utcnow()
        if not due_known and await self.database.reads.one(self._any_due, now=now) is None:
            return []
        until = now + dt.timedelta(seconds=self.lease_seconds)
        async with self.database.engine.begin() as connection:
            leased = await connection.execute(self._lease_due, {"now": now, "until": until})
            rows = [(row.id, row.type) for row in leased]
            # Only events someone receives are read back, decoded and published, in order.
            wanted_types = {kind for kind in {kind for _, kind in rows} if self.bus.wants(kind)}
            wanted = [event_id for event_id, kind in rows if kind in wanted_types]
            envelopes = (
                (await connection.execute(self._envelopes, {"ids": wanted})).all() if wanted else []
            )
        published = {event_id for event_id, _ in rows}
        return [{"id": row.id, "envelope": row.envelope} for row in envelopes] + [
            {"id": event_id, "envelope": None}
            for event_id in published.difference(row.id for row in envelopes)
        ]

    async def run_once(self, *, due_known: bool = False) -> int:
        """Publish one leased batch (as one `publish_batch`, in commit order); returns how
        many events were published. If the bus fails, the whole batch is released for the
        next run: consumers' inboxes absorb what was delivered before the failure.

        `due_known`: a commit in this process just woke the relay, or the last batch came
        back full, so whether anything is due is not asked first (`any_due`)."""
        rows = await self._lease(due_known=due_known)
        # Rows no one receives need no delivery: they are marked sent whatever happens.
        published: list[str] = [row["id"] for row in rows if row["envelope"] is None]
        try:
            events = [
                CloudEvent.model_validate(row["envelope"])
                for row in rows
                if row["envelope"] is not None
            ]
            if events:
                with span(
                    f"publish {events[0].source.rsplit('/', 1)[-1]} events",
                    kind="producer",
                    links=trace_links(events),
                    attributes={"messaging.batch.message_count": len(events)},
                ):
                    await self.bus.publish_batch(events)
            published = [row["id"] for row in rows]
        except Exception as error:
            log.warning("outbox_publish_failed", error=repr(error), pending=len(rows))
            await self._release(rows, published, repr(error))
            raise
        finally:
            if published:
                await self._mark_published(published)
                self._published.inc(len(published))
        return len(published)

    async def measure_backlog(self) -> None:
        """Set the backlog metrics: unpublished events, and the age of the oldest."""
        table = self.table
        async with self.database.read_engine.connect() as connection:
            count, oldest = (
                await connection.execute(
                    select(func.count(), func.min(table.c.created_at)).where(
                        table.c.published_at.is_(None)
                    )
                )
            ).one()
        self._backlog.set(count)
        if oldest is None:
            self._oldest.set(0)
        else:
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=dt.UTC)
            self._oldest.set(max(0.0, (utcnow() - oldest).total_seconds()))

    async def purge_published(self, retention_seconds: float) -> int:
        """Delete events published longer ago than the retention; returns how many."""
        cutoff = utcnow() - dt.timedelta(seconds=retention_seconds)
        async with self.database.engine.begin() as connection:
            result = await connection.execute(
                self.table.delete().where(
                    self.table.c.published_at.is_not(None), self.table.c.published_at < cutoff
                )
            )
            return int(result.rowcount)

    async def _mark_published(self, ids: list[str]) -> None:
        """Delete the published rows (retention 0, the default: a delete writes no new row
        version) or keep them marked for `retention_seconds`, e.g. to inspect them."""
        async with self.database.engine.begin() as connection:
            if self.retention_seconds <= 0:
                await connection.execute(self._delete_published, {"ids": ids})
                return
            await connection.execute(self._mark_published_rows, {"ids": ids, "now": utcnow()})

    async def _release(self, rows: list[dict[str, Any]], published: list[str], error: str) -> None:
        failed = [row["id"] for row in rows if row["id"] not in published]
        async with self.database.transaction() as session:
            await session.execute(
                update(self.table)
                .where(self.table.c.id.in_(failed))
                .values(locked_until=None, last_error=error[:2000])
            )

    def stop(self) -> None:
        """Ask `run_forever` to finish its current batch and return."""
        self.stopping.set()
        self._wake.set()

    async def run_forever(self) -> None:
        woke = False
        while not self.stopping.is_set():
            if time.monotonic() - self._measured_at >= BACKLOG_MEASURE_SECONDS:
                self._measured_at = time.monotonic()
                try:
                    await self.measure_backlog()
                except Exception:
                    log.warning("outbox_backlog_unmeasured", service=self.service)
            try:
                # Go straight on only while batches come back full; otherwise wait for
                # the next commit (and a short debounce) so batches stay large.
                due_known = woke
                while (
                    await self.run_once(due_known=due_known) >= self.batch_size
                    and not self.stopping.is_set()
                ):
                    due_known = True
            except Exception:
                log.exception("outbox_relay_error")
            woke = await woken(self._wake, self.interval_seconds)
            if woke:
                # Let a burst of commits accumulate: fewer, fuller relay transactions.
                await pause(self.stopping, self.debounce_seconds)
                self._wake.clear()  # commits during the debounce are in the next batch


BACKLOG_MEASURE_SECONDS = 5.0
"""How often a relay counts its outbox's unpublished events for the metrics."""

INBOX_CHUNK = 300
"""Inbox rows per statement on SQLite (3 parameters each, well under its variable limit)."""


class Consumer:
    """Runs a handler once per event id, in a transaction with its inbox row.

    A failing handler is retried with exponential backoff; after `max_attempts` the event
    is written to the dead-letter table with its error (and marked handled, so redelivery
    does not retry it again until an operator replays it).

    With a `batch_handler`, `handle_batch` takes a run of events in one transaction: the
    inbox rows of all of them, then the batch handler on those not handled before. Should
    that transaction fail, each event goes through the per-event path above (retries, dead
    letter), so the outcome is exactly what one-by-one delivery would have given.
    """

    def __init__(
        self,
        name: str,
        database: Database,
        tables: KernelTables,
        handler: ConsumerHandler,
        *,
        batch_handler: BatchConsumerHandler | None = None,
        max_attempts: int = 5,
        retry_base_seconds: float = 0.05,
    ) -> None:
        self.name = name
        self.database = database
        self.tables = tables
        self.handler = handler
        self.batch_handler = batch_handler
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self._attempts = CONSUMER_ATTEMPTS.labels(name)
        self._failures = CONSUMER_FAILURES.labels(name)
        self._dead_letters = CONSUMER_DEAD_LETTERS.labels(name)
        inbox = tables.inbox
        # PostgreSQL: one prepared statement whatever the batch size. Ids go in sorted, so
        # two batches that overlap take the inbox rows' locks in the same order.
        self._pg_inbox_batch = (
            postgresql.insert(inbox)
            .from_select(
                ["event_id", "consumer", "processed_at"],
                select(
                    func.unnest(bindparam("ids", type_=ARRAY(String))),
                    literal(name, String),
                    bindparam("now", type_=inbox.c.processed_at.type),
                ),
            )
            .on_conflict_do_nothing()
            .returning(inbox.c.event_id)
        )

    @property
    def batches(self) -> bool:
        """Whether this consumer takes events in batches (`handle_batch`)."""
        return self.batch_handler is not None

    async def handle_batch(self, events: Sequence[CloudEvent]) -> None:
        """Handle `events` (in order) in one transaction, or one by one if it fails."""
        if self.batch_handler is None or len(events) < 2:
            for event in events:
                await self(event)
            return
        self._attempts.inc(len(events))
        try:
            if not tracing_on():
                await self._handle_batch_once(self.batch_handler, events)
                return
            traces = {traceparent_of(event)[:35] for event in events}
            with span(
                f"{self.name} process",
                kind="consumer",
                # One trace: its child. Several: linked to each.
                parent=traceparent_of(events[0]) if len(traces) == 1 else None,
                links=[] if len(traces) == 1 else trace_links(events),
                attributes={
                    "messaging.consumer.group.name": self.name,
                    "messaging.batch.message_count": len(events),
                },
            ):
                await self._handle_batch_once(self.batch_handler, events)
            return
        except Exception as failure:
            self._failures.inc(len(events))
            log.warning(
                "consumer_batch_failed",
                consumer=self.name,
                events=len(events),
                first_event_id=events[0].id,
                error=repr(failure),
            )
        for event in events:
            await self(event)

    async def _handle_batch_once(
        self, batch_handler: BatchConsumerHandler, events: Sequence[CloudEvent]
    ) -> None:
        unique: dict[str, CloudEvent] = {}
        for event in events:
            unique.setdefault(event.id, event)  # a repeat inside the batch is a redelivery
        async with self.database.transaction() as session:
            new = await self._record_batch_in_inbox(session, list(unique))
            fresh = [event for event_id, event in unique.items() if event_id in new]
            if fresh:
                await batch_handler(session, fresh)

    async def _record_batch_in_inbox(self, session: AsyncSession, ids: list[str]) -> set[str]:
        """Insert the inbox rows, ignoring those already there; returns the new ids."""
        now = utcnow()
        if self.database.is_postgres:
            result = await session.execute(self._pg_inbox_batch, {"ids": sorted(ids), "now": now})
            return set(result.scalars())
        new: set[str] = set()
        inbox = self.tables.inbox
        for start in range(0, len(ids), INBOX_CHUNK):
            rows = [
                {"event_id": event_id, "consumer": self.name, "processed_at": now}
                for event_id in ids[start : start + INBOX_CHUNK]
            ]
            # SQLite's RETURNING names only the rows the statement inserted.
            statement = (
                sqlite.insert(inbox)
                .values(rows)
                .on_conflict_do_nothing()
                .returning(inbox.c.event_id)
            )
            new.update((await session.execute(statement)).scalars())
        return new

    async def __call__(self, event: CloudEvent) -> None:
        if not tracing_on():
            await self._handle(event)
            return
        with span(
            f"{self.name} process",
            kind="consumer",
            parent=traceparent_of(event) or None,  # the span that wrote the event
            attributes={
                "messaging.consumer.group.name": self.name,
                "messaging.message.id": event.id,
                "cloudevents.event_type": event.type,
            },
        ) as current:
            if not await self._handle(event):
                mark_failed(current, "dead-lettered")

    async def _handle(self, event: CloudEvent) -> bool:
        """Handle with retries; False when the event ended as a dead letter."""
        error: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            self._attempts.inc()
            try:
                await self._handle_once(event)
                return True
            except Exception as failure:
                self._failures.inc()
                error = failure
                log.warning(
                    "consumer_failed",
                    consumer=self.name,
                    event_id=event.id,
                    event_type=event.type,
                    attempt=attempt,
                    error=repr(failure),
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.retry_base_seconds * 2 ** (attempt - 1))
        await self._dead_letter(event, error)
        self._dead_letters.inc()
        return False

    async def _handle_once(self, event: CloudEvent) -> None:
        async with self.database.transaction() as session:
            first_time = await self._record_in_inbox(session, event)
            if first_time:
                await self.handler(session, event)

    async def _record_in_inbox(self, session: AsyncSession, event: CloudEvent) -> bool:
        inserted = await session.execute(
            insert_ignoring_conflicts(session, self.tables.inbox).values(
                event_id=event.id, consumer=self.name, processed_at=utcnow()
            )
        )
        return bool(inserted.rowcount)  # type: ignore[attr-defined]

    async def _dead_letter(self, event: CloudEvent, error: Exception | None) -> None:
        log.error("consumer_dead_lettered", consumer=self.name, event_id=event.id)
        async with self.database.transaction() as session:
            if not await self._record_in_inbox(session, event):
                return  # handled meanwhile by another delivery
            await session.execute(
                self.tables.dead_letter.insert().values(
                    id=new_id("dlq"),
                    event_id=event.id,
                    consumer=self.name,
                    event_type=event.type,
                    envelope=event.model_dump(mode="json"),
                    attempts=self.max_attempts,
                    error=repr(error)[:4000],
                    failed_at=utcnow(),
                )
            )

    async def replay(self, dead_letter_id: str) -> None:
        """Deliver a dead-lettered event to this consumer again."""
        dead = self.tables.dead_letter
        inbox = self.tables.inbox
        async with self.database.transaction() as session:
            row = (
                await session.execute(
                    select(dead.c.envelope, dead.c.event_id).where(
                        dead.c.id == dead_letter_id, dead.c.consumer == self.name
                    )
                )
            ).one()
            await session.execute(
                inbox.delete().where(
                    and_(inbox.c.event_id == row.event_id, inbox.c.consumer == self.name)
                )
            )
            await session.execute(
                update(dead).where(dead.c.id == dead_letter_id).values(replayed_at=utcnow())
            )
        await self(CloudEvent.model_validate(row.envelope))
