"""A tiny service used only by the kernel tests: notes, a counter fed by events, tasks.

Module-level switches let a test steer it; `reset()` puts them back between tests:

* `gate[text]`: a note with this text waits for the event before touching the database
  (so on SQLite it holds no write lock) and sets `arrived[text]` when it gets there.
* `crash_once`: a note whose text is in it writes, then raises an unhandled error once.
* `cured`: once set, the `picky` consumer digests "poison" notes instead of failing.
* `flaky_failures[name]`: how many more times the `flaky` task fails before it succeeds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Column, Integer, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.config import EdgeRoute
from paymesh.kernel.db import service_metadata
from paymesh.kernel.errors import NotFound, PaymeshError
from paymesh.kernel.events import CloudEvent
from paymesh.kernel.ids import new_id
from paymesh.kernel.money import AmountMinor, CurrencyCode
from paymesh.kernel.routing import SessionDep
from paymesh.kernel.runtime import ConsumerSpec, ServiceRuntime, ServiceSpec
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
tables = KernelTables(metadata)
notes = Table(
    "note",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("text", String(200), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
)
effects = Table(
    "effect",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("count", Integer, nullable=False),
)


class NoteCreate(BaseModel):
    text: str = Field(min_length=1, max_length=200)
    amount: AmountMinor
    currency: CurrencyCode
    fail: bool = False


class Note(BaseModel):
    id: str
    text: str
    amount: int
    currency: str


class NoteRejected(PaymeshError):
    code = "note_rejected"
    status = 409
    title = "The note was rejected"


router = service_router(prefix="/v1/sample")
gate: dict[str, asyncio.Event] = {}
arrived: dict[str, asyncio.Event] = {}
crash_once: set[str] = set()
cured: set[str] = set()
flaky_failures: dict[str, int] = {}


def reset() -> None:
    gate.clear()
    arrived.clear()
    crash_once.clear()
    cured.clear()
    flaky_failures.clear()


@router.post("/notes", status_code=201)
async def create_note(body: NoteCreate, session: SessionDep, request: Request) -> Note:
    """Create a note and emit `sample.note.created` in the same transaction."""
    runtime: ServiceRuntime = request.app.state.runtime
    if body.text in gate:
        arrived.setdefault(body.text, asyncio.Event()).set()
        await gate[body.text].wait()
    note = Note(id=new_id("note"), text=body.text, amount=body.amount, currency=body.currency)
    await session.execute(notes.insert().values(**note.model_dump()))
    await runtime.outbox.add(session, "sample.note.created", note.model_dump(), subject=note.id)
    if body.text in crash_once:
        crash_once.discard(body.text)
        raise RuntimeError("crashed after writing the note")
    if body.fail:
        raise NoteRejected(detail="asked to fail")
    return note


@router.get("/notes")
async def list_notes(session: SessionDep) -> list[Note]:
    rows = await session.execute(select(notes).order_by(notes.c.id))
    return [Note(**row._mapping) for row in rows]


@router.get("/notes/{note_id}")
async def get_note(note_id: str, session: SessionDep, text: str | None = None) -> Note:
    """One note; `text`, when given, must match it."""
    query = select(notes).where(notes.c.id == note_id)
    if text is not None:
        query = query.where(notes.c.text == text)
    row = (await session.execute(query)).one_or_none()
    if row is None:
        raise NotFound(detail=f"no note {note_id}")
    return Note(**row._mapping)


@router.get("/admin/whoami")
async def whoami(caller: Annotated[Caller, Depends(require(roles=["admin"]))]) -> dict[str, Any]:
    """Only admins may call this; it says who they are."""
    return {"subject": caller.subject, "roles": sorted(caller.roles)}


@router.post("/crash")
async def crash() -> Response:
    raise RuntimeError("secret internal detail")


async def count_effect(session: AsyncSession, name: str) -> None:
    result = await session.execute(
        update(effects).where(effects.c.name == name).values(count=effects.c.count + 1)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        await session.execute(effects.insert().values(name=name, count=1))


async def on_note_created(session: AsyncSession, event: CloudEvent) -> None:
    await count_effect(session, f"note:{event.data['id']}")


async def poison(session: AsyncSession, event: CloudEvent) -> None:
    if event.data.get("text") == "poison" and "poison" not in cured:
        raise ValueError("cannot digest this note")
    await count_effect(session, f"picky:{event.data['id']}")


async def task_count(session: AsyncSession, payload: dict[str, Any]) -> None:
    await count_effect(session, f"task:{payload['name']}")


async def task_explode(session: AsyncSession, payload: dict[str, Any]) -> None:
    await count_effect(session, f"task:{payload['name']}")
    raise RuntimeError(f"task {payload['name']} exploded")


async def task_flaky(session: AsyncSession, payload: dict[str, Any]) -> None:
    await count_effect(session, f"task:{payload['name']}")
    if flaky_failures.get(payload["name"], 0) > 0:
        flaky_failures[payload["name"]] -= 1
        raise RuntimeError(f"task {payload['name']} failed, will work later")


def _consumers(_runtime: ServiceRuntime) -> list[ConsumerSpec]:
    return [
        ConsumerSpec("count-notes", ("sample.note.*",), on_note_created),
        ConsumerSpec("picky", ("sample.note.created",), poison),
    ]


SPEC = ServiceSpec(
    name="sample",
    title="Sample",
    description="Kernel test service.",
    metadata=metadata,
    tables=tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    # The kernel's tests speak to the service itself: the gateway lets them through, and
    # the service's own checks answer (tests/gateway covers the gateway's).
    edge_routes=(
        EdgeRoute("/v1/sample", policy="public"),
        # Protected at the edge too: a bad token is refused before the body is measured.
        EdgeRoute("/v1/sample/decoding/protected"),
    ),
    consumers=_consumers,
    task_handlers=lambda _runtime: {
        "count": task_count,
        "explode": task_explode,
        "flaky": task_flaky,
    },
)
