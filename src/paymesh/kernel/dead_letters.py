"""Dead letters as operators meet them: list, read and replay the events a consumer gave up on.

A `Consumer` (kernel/events.py) retries a failing handler, then writes the event to its
service's `dead_letter` table and stops trying. Every service with consumers serves, for
the `ops` and `admin` roles only:

    GET  /v1/<service>/dead-letters                 the rows, oldest first, without payloads
    GET  /v1/<service>/dead-letters/{id}            one row with its CloudEvent envelope
    POST /v1/<service>/dead-letters/{id}/replay     deliver it to its consumer again

A list never carries the envelope: event data may name people (a profile's name, an
address), and an operator scanning failures needs the type and the error, not the payload.
The replay runs the consumer's own path (`Consumer.replay`): its inbox makes the effect
happen once, and a handler that fails again is dead-lettered again as a new row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import Row, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.auth import Caller, require
from paymesh.kernel.db import utcnow
from paymesh.kernel.errors import PaymeshError, problem_responses
from paymesh.kernel.events import Consumer
from paymesh.kernel.pagination import InvalidCursor, decode_cursor, encode_cursor
from paymesh.kernel.routing import ServiceRoute, SessionDep
from paymesh.kernel.tables import KernelTables

if TYPE_CHECKING:
    from paymesh.kernel.runtime import ServiceRuntime

log = structlog.get_logger("paymesh.dead_letters")

OPERATOR_ROLES = frozenset({"ops", "admin"})
ERROR_PREVIEW_CHARACTERS = 500
"""How much of a handler's error a list shows; the row itself shows what was stored."""


class DeadLetterNotFound(PaymeshError):
    code = "dead_letter_not_found"
    status = 404
    title = "No such dead letter"


class DeadLetterAlreadyReplayed(PaymeshError):
    code = "already_replayed"
    status = 409
    title = "This dead letter was already replayed"


class DeadLetterConsumerGone(PaymeshError):
    code = "consumer_gone"
    status = 409
    title = "The consumer of this dead letter no longer exists"


class DeadLetter(BaseModel):
    """An event a consumer gave up on, without its payload."""

    id: str = Field(description="`dlq_...`")
    consumer: str = Field(description="`<service>.<consumer>`, e.g. `risk.payments_succeeded`.")
    event_id: str = Field(description="The CloudEvent's `id`.")
    event_type: str = Field(description="The CloudEvent's `type`.")
    attempts: int = Field(description="Deliveries tried before the consumer gave up.")
    error: str = Field(
        description="The handler's last error (its Python repr); in lists, at most "
        f"{ERROR_PREVIEW_CHARACTERS} characters."
    )
    failed_at: dt.datetime = Field(description="When the consumer gave up (UTC).")
    replayed_at: dt.datetime | None = Field(
        description="When an operator replayed it (UTC); null while it waits."
    )


class DeadLetterDetail(DeadLetter):
    """A dead letter with the whole CloudEvent it holds."""

    envelope: dict[str, Any] = Field(description="The CloudEvent as delivered (JSON).")


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class DeadLetterReplay(BaseModel):
    """What a replay did."""

    id: str = Field(description="The dead letter replayed.")
    replayed_at: dt.datetime
    outcome: Literal["handled", "dead_lettered_again"] = Field(
        description="`handled`: the consumer took the event (or another delivery already "
        "had); `dead_lettered_again`: it failed every retry again, see `dead_letter_id`."
    )
    dead_letter_id: str | None = Field(
        default=None, description="The new dead letter when the replay failed again."
    )


# -- queries --------------------------------------------------------------------------------

LISTED_COLUMNS = (
    "id",
    "consumer",
    "event_id",
    "event_type",
    "attempts",
    "error",
    "failed_at",
    "replayed_at",
)


async def select_page(
    session: AsyncSession,
    tables: KernelTables,
    *,
    consumer: str | None,
    event_type: str | None,
    replayed: bool | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Row[Any]], str | None]:
    """A page of dead letters ordered by (failed_at, id), and the cursor after it."""
    table = tables.dead_letter
    query = select(*(table.c[name] for name in LISTED_COLUMNS))
    if consumer is not None:
        query = query.where(table.c.consumer == consumer)
    if event_type is not None:
        query = query.where(table.c.event_type == event_type)
    if replayed is not None:
        replayed_at = table.c.replayed_at
        query = query.where(replayed_at.is_not(None) if replayed else replayed_at.is_(None))
    if cursor is not None:
        after, last_id = decode_cursor(cursor)
        query = query.where(
            or_(
                table.c.failed_at > after,
                (table.c.failed_at == after) & (table.c.id > last_id),
            )
        )
    query = query.order_by(table.c.failed_at, table.c.id).limit(limit + 1)
    rows = (await session.execute(query)).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.failed_at, last.id)


async def select_one(
    session: AsyncSession, tables: KernelTables, dead_letter_id: str
) -> Row[Any] | None:
    table = tables.dead_letter
    return (await session.execute(select(table).where(table.c.id == dead_letter_id))).first()


def listed(row: Row[Any]) -> DeadLetter:
    fields = {name: getattr(row, name) for name in LISTED_COLUMNS}
    fields["error"] = fields["error"][:ERROR_PREVIEW_CHARACTERS]
    return DeadLetter(**fields)


def detailed(row: Row[Any]) -> DeadLetterDetail:
    fields = {name: getattr(row, name) for name in LISTED_COLUMNS}
    return DeadLetterDetail(**fields, envelope=row.envelope)


# -- replay ---------------------------------------------------------------------------------


def consumer_named(runtime: ServiceRuntime, name: str) -> Consumer | None:
    """The runtime's consumer whose full name (`<service>.<consumer>`) the row stores."""
    for consumer in runtime.consumers.values():
        if consumer.name == name:
            return consumer
    return None


async def replay_through_consumer(
    runtime: ServiceRuntime, dead_letter_id: str, caller: Caller
) -> DeadLetterReplay:
    """Claim the row (so two operators cannot run the handler twice), run the consumer's
    own replay, then read what it left: a new dead letter for the event means it failed
    again. The consumer commits its own transactions, as it does for a live delivery."""
    table = runtime.tables.dead_letter
    async with runtime.database.transaction() as session:
        row = await select_one(session, runtime.tables, dead_letter_id)
        if row is None:
            raise DeadLetterNotFound(detail=f"no dead letter {dead_letter_id}")
        if row.replayed_at is not None:
            raise DeadLetterAlreadyReplayed(detail=f"replayed at {row.replayed_at.isoformat()}")
        consumer = consumer_named(runtime, row.consumer)
        if consumer is None:
            raise DeadLetterConsumerGone(detail=f"{row.consumer} is not a consumer here")
        earlier = set(
            (
                await session.scalars(
                    select(table.c.id).where(
                        table.c.event_id == row.event_id, table.c.consumer == row.consumer
                    )
                )
            ).all()
        )
        claimed = await session.execute(
            update(table)
            .where(table.c.id == dead_letter_id, table.c.replayed_at.is_(None))
            .values(replayed_at=utcnow())
        )
        if not claimed.rowcount:  # type: ignore[attr-defined]
            raise DeadLetterAlreadyReplayed()
    try:
        await consumer.replay(dead_letter_id)
    except BaseException:
        # Nothing of the handler's was committed (a failed handler rolls back; only the
        # replay's own bookkeeping or the new dead letter's write can raise here): the row
        # waits for another replay.
        async with runtime.database.transaction() as session:
            await session.execute(
                update(table).where(table.c.id == dead_letter_id).values(replayed_at=None)
            )
        raise
    return await _outcome(runtime, row, earlier, caller)


async def _outcome(
    runtime: ServiceRuntime, row: Row[Any], earlier: set[str], caller: Caller
) -> DeadLetterReplay:
    table = runtime.tables.dead_letter
    async with runtime.database.transaction(read_only=True) as session:
        replayed_at = await session.scalar(select(table.c.replayed_at).where(table.c.id == row.id))
        again = (
            await session.scalars(
                select(table.c.id)
                .where(table.c.event_id == row.event_id, table.c.consumer == row.consumer)
                .order_by(table.c.failed_at.desc(), table.c.id.desc())
            )
        ).all()
    new = next((found for found in again if found not in earlier), None)
    outcome: Literal["handled", "dead_lettered_again"] = (
        "dead_lettered_again" if new is not None else "handled"
    )
    log.info(
        "dead_letter_replayed",
        dead_letter_id=row.id,
        consumer=row.consumer,
        event_id=row.event_id,
        event_type=row.event_type,
        outcome=outcome,
        new_dead_letter_id=new,
        actor=caller.subject,
    )
    return DeadLetterReplay(
        id=row.id, replayed_at=replayed_at or utcnow(), outcome=outcome, dead_letter_id=new
    )


# -- HTTP -----------------------------------------------------------------------------------

Operator = Annotated[Caller, Depends(require(roles=OPERATOR_ROLES))]
DeadLetterId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_]{1,64}$", description="`dlq_...`")]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=512, description="From `next_cursor`.")]
ConsumerName = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_.:-]{1,100}$",
        description="Only this consumer's: its full name (`risk.payments_succeeded`) or the "
        "short one (`payments_succeeded`).",
    ),
]
EventType = Annotated[
    str | None,
    Query(pattern=r"^[A-Za-z0-9_.:-]{1,200}$", description="Only events of this exact type."),
]
Replayed = Annotated[
    bool | None,
    Query(description="`false`: only those still waiting; `true`: only those replayed."),
]


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def dead_letter_router(service: str) -> APIRouter:
    """The dead-letter routes of `service`, under `/v1/<service>/dead-letters`. Include it
    before the service's own routers: a route such as `/v1/profiles/{user_id}` would
    otherwise take `/v1/profiles/dead-letters`."""
    router = APIRouter(
        route_class=ServiceRoute, prefix=f"/v1/{service}/dead-letters", tags=[service]
    )
    own_prefix = f"{service}."

    @router.get(
        "",
        response_model=DeadLetterPage,
        summary="List dead letters",
        responses=problem_responses(InvalidCursor),
    )
    async def list_dead_letters(
        request: Request,
        session: SessionDep,
        _caller: Operator,
        consumer: ConsumerName = None,
        event_type: EventType = None,
        replayed: Replayed = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> DeadLetterPage:
        """Events this service's consumers gave up on after every retry, oldest first,
        with the last error (cut to 500 characters). The event's data is left out: read
        one dead letter for it. `replayed=false` lists what still waits for an operator."""
        if consumer is not None and not consumer.startswith(own_prefix):
            consumer = own_prefix + consumer
        rows, next_cursor = await select_page(
            session,
            _runtime(request).tables,
            consumer=consumer,
            event_type=event_type,
            replayed=replayed,
            limit=limit,
            cursor=cursor,
        )
        return DeadLetterPage(items=[listed(row) for row in rows], next_cursor=next_cursor)

    @router.get(
        "/{dead_letter_id}",
        response_model=DeadLetterDetail,
        summary="Read a dead letter",
        responses=problem_responses(DeadLetterNotFound),
    )
    async def get_dead_letter(
        dead_letter_id: DeadLetterId, request: Request, session: SessionDep, _caller: Operator
    ) -> DeadLetterDetail:
        """One dead letter with the whole error stored and the CloudEvent it holds, data
        included (which may name a person: read it only to decide on the replay)."""
        row = await select_one(session, _runtime(request).tables, dead_letter_id)
        if row is None:
            raise DeadLetterNotFound(detail=f"no dead letter {dead_letter_id}")
        return detailed(row)

    @router.post(
        "/{dead_letter_id}/replay",
        response_model=DeadLetterReplay,
        summary="Replay a dead letter",
        responses=problem_responses(
            DeadLetterNotFound, DeadLetterAlreadyReplayed, DeadLetterConsumerGone
        ),
    )
    async def replay_dead_letter(
        dead_letter_id: DeadLetterId, request: Request, caller: Operator
    ) -> DeadLetterReplay:
        """Deliver the event to its consumer again, with the consumer's retries, once fixed
        what made it fail. Answers when the consumer is done: `handled`, or
        `dead_lettered_again` with the new dead letter (this one stays replayed). A dead
        letter is replayed once (409 `already_replayed` after); a consumer removed since
        is 409 `consumer_gone`."""
        # No request session here: the consumer commits its own transactions, and on
        # SQLite a request holding the writer would make it wait for itself.
        return await replay_through_consumer(_runtime(request), dead_letter_id, caller)

    return router
