"""Audit HTTP API under /v1/audit, for `auditor` and `admin`: search, one record, export
(JSON Lines or CSV, streamed), counts per type per day, and verification of the trail.
There is no write path: records come only from events."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, func, select

from paymesh.audit import errors
from paymesh.audit.models import AuditRecord
from paymesh.audit.schemas import DailyCount, Page, Record, VerificationOut
from paymesh.audit.trail import AuditTrail
from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.errors import problem_responses
from paymesh.kernel.pagination import InvalidCursor, decode_cursor, encode_cursor
from paymesh.kernel.routing import SessionDep

router = service_router(prefix="/v1/audit", tags=["audit"])

Auditor = Annotated[Caller, Depends(require(roles={"auditor", "admin"}))]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=512, description="From `next_cursor`.")]
Text = Annotated[str | None, Query(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")]
EXPORT_BATCH = 1000


class Filters:
    """The search's filters, shared by search and export."""

    def __init__(
        self,
        actor: Annotated[
            str | None, Query(min_length=1, max_length=255, description="Subject who acted.")
        ] = None,
        type: Annotated[  # noqa: A002 - the API's name for it
            str | None,
            Query(max_length=128, pattern=r"^[a-z0-9_.*]+$", description="`x.y.z` or `x.*`."),
        ] = None,
        resource: Text = None,
        from_: Annotated[dt.datetime | None, Query(alias="from")] = None,
        to: Annotated[dt.datetime | None, Query()] = None,
    ) -> None:
        if from_ and to and from_ > to:
            raise errors.InvalidTimeRange()
        self.actor = actor
        self.type = type
        self.resource = resource
        self.start = from_
        self.end = to

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.actor is not None:
            query = query.where(AuditRecord.actor_subject == self.actor)
        if self.type is not None:
            if self.type.endswith("*"):
                query = query.where(AuditRecord.type.startswith(self.type.rstrip("*")))
            else:
                query = query.where(AuditRecord.type == self.type)
        if self.resource is not None:
            query = query.where(AuditRecord.resource == self.resource)
        if self.start is not None:
            query = query.where(AuditRecord.occurred_at >= self.start)
        if self.end is not None:
            query = query.where(AuditRecord.occurred_at < self.end)
        return query


FiltersDep = Annotated[Filters, Depends()]


def _ordered(filters: Filters) -> Select[Any]:
    query = select(AuditRecord).order_by(AuditRecord.occurred_at, AuditRecord.id)
    return filters.apply(query)


@router.get(
    "/records",
    response_model=Page[Record],
    responses=problem_responses(InvalidCursor, errors.InvalidTimeRange),
)
async def search(
    session: SessionDep,
    filters: FiltersDep,
    _caller: Auditor,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[Record]:
    """Records oldest first, filtered by who acted, event type (`payments.*` for a
    prefix), resource and time (`from` inclusive, `to` exclusive)."""
    query = _ordered(filters).limit(limit + 1)
    if cursor is not None:
        after, last_id = decode_cursor(cursor)
        query = query.where(
            (AuditRecord.occurred_at > after)
            | ((AuditRecord.occurred_at == after) & (AuditRecord.id > last_id))
        )
    rows = list((await session.scalars(query)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].occurred_at, rows[-1].id)
    return Page[Record](data=[Record.of(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/records/{record_id}",
    response_model=Record,
    responses=problem_responses(errors.RecordNotFound),
)
async def get_record(
    record_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_]{1,64}$")],
    session: SessionDep,
    _caller: Auditor,
) -> Record:
    """One record, with its chain position and hashes."""
    row = await session.get(AuditRecord, record_id)
    if row is None:
        raise errors.RecordNotFound()
    return Record.of(row)


@router.get(
    "/export",
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}},
        **problem_responses(errors.InvalidTimeRange),
    },
)
async def export(
    request: Request,
    filters: FiltersDep,
    _caller: Auditor,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",  # noqa: A002
) -> StreamingResponse:
    """Every matching record, streamed as JSON Lines or CSV (read in batches: the export
    never holds the trail in memory)."""
    database = request.app.state.runtime.database
    lines = _jsonl(database, filters) if format == "jsonl" else _csv(database, filters)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    disposition = f'attachment; filename="audit.{format}"'
    return StreamingResponse(lines, media_type=media, headers={"content-disposition": disposition})


async def _batches(database: Any, filters: Filters) -> AsyncIterator[list[Record]]:
    after: tuple[dt.datetime, str] | None = None
    while True:
        query = _ordered(filters).limit(EXPORT_BATCH)
        if after is not None:
            query = query.where(
                (AuditRecord.occurred_at > after[0])
                | ((AuditRecord.occurred_at == after[0]) & (AuditRecord.id > after[1]))
            )
        async with database.transaction(read_only=True) as session:
            rows = list((await session.scalars(query)).all())
        if not rows:
            return
        yield [Record.of(row) for row in rows]
        if len(rows) < EXPORT_BATCH:
            return
        after = (rows[-1].occurred_at, rows[-1].id)


async def _jsonl(database: Any, filters: Filters) -> AsyncIterator[bytes]:
    async for batch in _batches(database, filters):
        yield b"".join(record.model_dump_json().encode() + b"\n" for record in batch)


CSV_COLUMNS = ("id", "chain", "seq", "occurred_at", "type", "resource", "actor", "data", "hash")


async def _csv(database: Any, filters: Filters) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    async for batch in _batches(database, filters):
        for record in batch:
            row = record.model_dump(mode="json")
            writer.writerow(
                [
                    json.dumps(row[column], separators=(",", ":"))
                    if isinstance(row[column], (dict, list))
                    else row[column]
                    for column in CSV_COLUMNS
                ]
            )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


@router.get(
    "/reports/daily-counts",
    response_model=list[DailyCount],
    responses=problem_responses(errors.InvalidTimeRange),
)
async def daily_counts(
    session: SessionDep, filters: FiltersDep, _caller: Auditor
) -> list[DailyCount]:
    """Records per event type per UTC day (the reports the source designs ask for)."""
    day = func.date(AuditRecord.occurred_at)
    query = filters.apply(
        select(day.label("day"), AuditRecord.type, func.count().label("count"))
        .group_by(day, AuditRecord.type)
        .order_by(day, AuditRecord.type)
    )
    return [
        DailyCount(day=str(row.day), type=row.type, count=row.count)
        for row in (await session.execute(query)).all()
    ]


@router.get("/verify", response_model=VerificationOut)
async def verify_trail(request: Request, _caller: Auditor) -> VerificationOut:
    """Recompute every record's hash and link and every checkpoint: `ok`, or the first
    changed, deleted, inserted or reordered record (chain and sequence number)."""
    trail: AuditTrail = request.app.state.runtime.state["trail"]
    result = await trail.verify(request.app.state.runtime.database)
    return VerificationOut.of(result)
