"""Group commit for units of work (kernel/groupcommit.py), on the real database: concurrent
works share a transaction and are answered only after it commits; a failing work fails
alone; works run in their order key's order; stop finishes what is queued."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import Database
from paymesh.kernel.groupcommit import GroupCommit
from paymesh.kernel.reads import Query, in_transaction
from tests.kernel.support import backend_pid, database_with

metadata = MetaData()
notes = Table(
    "group_probe",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("position", Integer, nullable=False),
)
INSERT = Query(notes.insert())
COUNT = Query(select(func.count().label("n")).select_from(notes))
BY_ID = Query(select(notes.c.position).where(notes.c.id == bindparam("note_id")))


@pytest.fixture
async def database(make_platform: Callable[..., Any]) -> Database:
    return await database_with(make_platform, metadata)


def writing(note_id: str, seen: list[str] | None = None) -> Any:
    async def work(session: AsyncSession) -> int:
        if seen is not None:
            seen.append(note_id)
        rows = await in_transaction(session, COUNT)
        position = int(rows[0]["n"])
        await in_transaction(session, INSERT, id=note_id, position=position)
        return position

    return work


@pytest.mark.parametrize("writers", [1, 2])
async def test_concurrent_works_share_one_commit_and_answer_after_it(
    database: Database, writers: int
) -> None:
    commits: list[int] = []
    database.on_commit(lambda _session: commits.append(1))
    # With two writers, batches of at most 5: two transactions in flight at once.
    group = GroupCommit(database, "probe", writers=writers, max_batch=5 if writers > 1 else 64)
    answered_committed: list[bool] = []

    async def one(note_id: str) -> int:
        position = await group.run(writing(note_id))
        # The answer comes after the commit: another connection already sees the row.
        answered_committed.append(await database.reads.one(BY_ID, note_id=note_id) is not None)
        return position

    positions = await asyncio.gather(*(one(f"n{number}") for number in range(20)))
    await group.stop()
    assert all(answered_committed)
    assert len(answered_committed) == 20
    assert len(commits) < 20  # shared transactions (the first work may commit alone)
    if writers == 1:
        # Each work saw the ones before it: positions 0..19, each once.
        assert sorted(positions) == list(range(20))


async def test_a_failing_work_fails_alone(database: Database) -> None:
    group = GroupCommit(database, "probe")

    async def failing(session: AsyncSession) -> int:
        await in_transaction(session, INSERT, id="doomed", position=-1)
        raise ValueError("this work is refused")

    results = await asyncio.gather(
        group.run(writing("a")),
        group.run(failing),
        group.run(writing("b")),
        return_exceptions=True,
    )
    await group.stop()
    assert isinstance(results[1], ValueError)
    assert sorted(r for r in results if isinstance(r, int)) == [0, 1]
    assert await database.reads.one(BY_ID, note_id="doomed") is None
    assert await database.reads.one(BY_ID, note_id="a") is not None
    assert await database.reads.one(BY_ID, note_id="b") is not None


async def test_works_run_in_their_order_key_order(database: Database) -> None:
    group = GroupCommit(database, "probe")
    seen: list[str] = []
    # Queued in one go (no await between): one batch, run sorted by the order key.
    runs = [
        asyncio.ensure_future(group.run(writing(note_id, seen), order=key))
        for note_id, key in (("z", "c"), ("y", "a"), ("x", "b"))
    ]
    await asyncio.gather(*runs)
    await group.stop()
    assert seen == ["y", "x", "z"]


async def test_stop_finishes_the_queue_and_refuses_new_work(database: Database) -> None:
    group = GroupCommit(database, "probe")
    runs = [asyncio.ensure_future(group.run(writing(f"s{number}"))) for number in range(5)]
    await asyncio.sleep(0)
    await group.stop()
    assert sorted(await asyncio.gather(*runs)) == list(range(5))
    with pytest.raises(RuntimeError, match="stopped"):
        await group.run(writing("late"))


async def test_a_caller_that_went_away_is_not_run(database: Database) -> None:
    group = GroupCommit(database, "probe")
    seen: list[str] = []
    gone = asyncio.ensure_future(group.run(writing("gone", seen)))
    await asyncio.sleep(0)  # queued
    gone.cancel()
    assert await group.run(writing("kept", seen)) == 0
    await group.stop()
    assert seen == ["kept"]
    assert await database.reads.one(BY_ID, note_id="gone") is None


async def test_stop_gives_up_on_a_stuck_work_after_its_grace(database: Database) -> None:
    group = GroupCommit(database, "probe")
    release = asyncio.Event()

    async def stuck(session: AsyncSession) -> int:
        await in_transaction(session, INSERT, id="stuck", position=0)
        await release.wait()  # never set
        return 0

    run = asyncio.ensure_future(group.run(stuck))
    queued = asyncio.ensure_future(group.run(writing("behind")))
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    await group.stop(grace_seconds=0.2)
    assert 0.15 < asyncio.get_running_loop().time() - started < 2
    for cancelled in (run, queued):
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    assert await database.reads.one(BY_ID, note_id="stuck") is None


async def test_stop_returns_at_once_when_idle(database: Database) -> None:
    group = GroupCommit(database, "probe")
    assert await group.run(writing("only")) == 0
    started = asyncio.get_running_loop().time()
    await group.stop(grace_seconds=10)
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_before_commit_is_given_the_whole_batchs_results(database: Database) -> None:
    batches: list[list[Any]] = []
    group = GroupCommit(database, "probe", before_commit=batches.append)
    # Queued in one go: one batch.
    runs = [asyncio.ensure_future(group.run(writing(f"h{number}"))) for number in range(3)]
    assert sorted(await asyncio.gather(*runs)) == [0, 1, 2]
    await group.stop()
    assert batches == [[0, 1, 2]]


async def test_a_batch_refused_before_its_commit_leaves_nothing(database: Database) -> None:
    def refuse(results: list[Any]) -> None:
        raise RuntimeError(f"refused {len(results)}")

    group = GroupCommit(database, "probe", before_commit=refuse)
    runs = [asyncio.ensure_future(group.run(writing(f"r{number}"))) for number in range(3)]
    results = await asyncio.gather(*runs, return_exceptions=True)
    await group.stop()
    # The batch rolled back, and so did each work retried alone.
    assert [str(result) for result in results] == ["refused 1"] * 3
    assert (await database.reads.one(COUNT))["n"] == 0  # type: ignore[index]


@pytest.mark.postgres_only
async def test_a_writer_keeps_its_connection_and_survives_its_death(database: Database) -> None:
    group = GroupCommit(database, "probe")
    try:
        first = await group.run(backend_pid)
        assert await group.run(backend_pid) == first  # the writer's held connection
        async with database.engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        await asyncio.sleep(0.1)

        # The batch fails on the dead connection; each work, retried alone, on a new one.
        runs = [asyncio.ensure_future(group.run(writing(f"k{number}"))) for number in range(3)]
        assert sorted(await asyncio.gather(*runs)) == [0, 1, 2]
        assert await group.run(backend_pid) != first
    finally:
        await group.stop()
