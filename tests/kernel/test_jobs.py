"""Background work claimed from the database: the task queue and the periodic scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from typing import Any

import pytest
from sqlalchemy import select

from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.jobs import PeriodicJob, Scheduler, TaskQueue
from paymesh.platform import Platform
from tests.engine_statements import engine_statements
from tests.kernel.sample import app as sample_app
from tests.kernel.support import effect_count, effects_like, eventually, runtime_of, table_rows


class Rollback(Exception):
    pass


async def enqueue(platform: Platform, kind: str, name: str, **options: Any) -> str:
    runtime = runtime_of(platform)
    async with runtime.database.transaction() as session:
        return await runtime.tasks.enqueue(session, kind, {"name": name}, **options)


async def task_row(platform: Platform, task_id: str) -> dict[str, Any]:
    [row] = [row for row in await table_rows(platform, "scheduled_task") if row["id"] == task_id]
    return row


def eager_queue(platform: Platform, database: Database | None = None, **options: Any) -> TaskQueue:
    """A worker on the sample's tasks that retries at once instead of backing off."""
    runtime = runtime_of(platform)
    return TaskQueue(
        database or runtime.database,
        runtime.tables,
        runtime.tasks.handlers,
        retry_base_seconds=0,
        **options,
    )


class TestEnqueueTask:
    async def test_a_task_enqueued_in_a_rolled_back_transaction_never_runs(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        with pytest.raises(Rollback):
            async with runtime.database.transaction() as session:
                await runtime.tasks.enqueue(session, "count", {"name": "ghost"})
                raise Rollback
        kept = await enqueue(idle_sample, "count", "kept")

        assert await runtime.tasks.run_once() == 1
        assert await runtime.tasks.run_once() == 0
        assert await effects_like(idle_sample, "task:") == {"task:kept": 1}
        assert [row["id"] for row in await table_rows(idle_sample, "scheduled_task")] == [kept]

    async def test_an_unknown_kind_is_refused(self, idle_sample: Platform) -> None:
        with pytest.raises(ValueError, match="no handler"):
            await enqueue(idle_sample, "nonexistent", "x")

    async def test_the_background_worker_runs_a_committed_task(self, sample: Platform) -> None:
        task_id = await enqueue(sample, "count", "background")

        done = await eventually(lambda: task_row(sample, task_id), lambda r: r["state"] == "done")
        assert done["attempts"] == 1
        assert done["finished_at"] is not None
        assert await effect_count(sample, "task:background") == 1

    async def test_a_commit_that_enqueues_wakes_the_worker_before_its_interval(
        self, idle_sample: Platform
    ) -> None:
        queue = eager_queue(idle_sample, interval_seconds=3600)
        worker = asyncio.create_task(queue.run_forever())
        try:
            await asyncio.sleep(0.05)  # the worker found nothing and waits out its hour
            task_id = await enqueue(idle_sample, "count", "woken")

            done = await eventually(
                lambda: task_row(idle_sample, task_id), lambda r: r["state"] == "done"
            )  # within eventually's 10 s, not the hour
            assert done["attempts"] == 1
        finally:
            queue.stop()
            await asyncio.wait_for(worker, 5)

    async def test_a_queue_without_task_kinds_does_not_poll(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        queue = TaskQueue(runtime.database, runtime.tables, {}, interval_seconds=0.01)
        with engine_statements(runtime.database) as statements:
            await asyncio.wait_for(queue.run_forever(), 1)  # returns at once
        claims = [statement for statement in statements if "scheduled_task" in statement]
        assert claims == []
        with pytest.raises(ValueError, match="no handler"):
            async with runtime.database.transaction() as session:
                await queue.enqueue(session, "count", {"name": "nowhere"})


class TestRunTask:
    async def test_a_failing_task_is_retried_until_it_succeeds(self, idle_sample: Platform) -> None:
        sample_app.flaky_failures["wobbly"] = 2
        task_id = await enqueue(idle_sample, "flaky", "wobbly", max_attempts=5)
        queue = eager_queue(idle_sample)

        assert await queue.run_once() == 1
        retrying = await task_row(idle_sample, task_id)
        assert (retrying["state"], retrying["attempts"]) == ("pending", 1)
        assert "will work later" in retrying["last_error"]
        while await queue.run_once():
            pass

        done = await task_row(idle_sample, task_id)
        assert (done["state"], done["attempts"]) == ("done", 3)
        # The two failed attempts rolled back their effects with them.
        assert await effect_count(idle_sample, "task:wobbly") == 1

    async def test_a_task_that_keeps_failing_is_marked_failed_after_max_attempts(
        self, idle_sample: Platform
    ) -> None:
        task_id = await enqueue(idle_sample, "explode", "boom", max_attempts=3)
        queue = eager_queue(idle_sample)

        runs = 0
        while await queue.run_once():
            runs += 1
            assert runs <= 3, "a failed task must not be claimed again"

        failed = await task_row(idle_sample, task_id)
        assert runs == 3
        assert failed["state"] == "failed"
        assert failed["attempts"] == 3
        assert failed["finished_at"] is not None
        assert failed["locked_until"] is None
        assert "task boom exploded" in failed["last_error"]
        assert await effect_count(idle_sample, "task:boom") == 0

    async def test_a_failed_attempt_backs_off_before_the_retry(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        task_id = await enqueue(idle_sample, "explode", "later", max_attempts=3)

        assert await runtime.tasks.run_once() == 1
        assert await runtime.tasks.run_once() == 0

        row = await task_row(idle_sample, task_id)
        assert row["state"] == "pending"
        assert row["run_at"] > row["created_at"]

    async def test_a_task_whose_worker_died_is_resumed_after_its_lease(
        self, idle_sample: Platform
    ) -> None:
        task_id = await enqueue(idle_sample, "count", "orphan")
        # A lease long enough that a loaded machine cannot outrun it between the two
        # statements below (50 ms could: CI saw it lapse), short enough to wait out.
        dead_worker = eager_queue(idle_sample, worker="dead", lease_seconds=1.0)
        [claimed] = await dead_worker.claim()  # claims, then "crashes" without running it
        assert claimed["id"] == task_id
        survivor = eager_queue(idle_sample, worker="survivor")
        assert await survivor.run_once() == 0  # the lease still holds

        await asyncio.sleep(1.1)  # let the lease run out
        assert await survivor.run_once() == 1

        row = await task_row(idle_sample, task_id)
        assert (row["state"], row["locked_by"], row["attempts"]) == ("done", "survivor", 2)
        assert await effect_count(idle_sample, "task:orphan") == 1

    async def test_a_poll_with_nothing_due_opens_no_transaction(
        self, idle_sample: Platform
    ) -> None:
        later = await enqueue(
            idle_sample, "count", "later", run_at=utcnow() + dt.timedelta(seconds=60)
        )
        queue = eager_queue(idle_sample)
        with engine_statements(runtime_of(idle_sample).database) as statements:
            assert await queue.run_once() == 0

        # Only the direct read asked whether a task is due: no claim's transaction.
        assert statements == []
        assert (await task_row(idle_sample, later))["state"] == "pending"

        # Woken by an enqueue, the worker claims without asking first (and finds nothing).
        with engine_statements(runtime_of(idle_sample).database) as woken_statements:
            assert await queue.run_once(due_known=True) == 0
        assert any(statement.startswith("UPDATE scheduled_task") for statement in woken_statements)


async def _drain(queue: TaskQueue, done: asyncio.Event) -> None:
    while not done.is_set():
        if not await queue.run_once(limit=5):
            await asyncio.sleep(0.005)


class TestConcurrentWorkers:
    @pytest.mark.postgres_only
    async def test_two_workers_process_every_task_exactly_once(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        total = 300
        async with runtime.database.transaction() as session:
            for number in range(total):
                await runtime.tasks.enqueue(session, "count", {"name": f"t{number:03}"})
        # Two workers as two processes would be: each with its own engine and pool.
        databases = [Database.for_service(idle_sample.settings, "sample") for _ in range(2)]
        workers = [
            eager_queue(idle_sample, database, worker=f"worker-{index}")
            for index, database in enumerate(databases)
        ]
        done = asyncio.Event()
        # Several loops per worker keep claims overlapping, as busy processes would.
        runs = [asyncio.create_task(_drain(worker, done)) for worker in workers for _ in range(4)]
        try:
            await eventually(
                lambda: effects_like(idle_sample, "task:"),
                lambda counts: sum(counts.values()) >= total,
                timeout_seconds=30,
            )
            await asyncio.sleep(0.05)  # a double claim would show up as an extra run now
        finally:
            done.set()
            await asyncio.gather(*runs)
            for database in databases:
                await database.dispose()

        counts = await effects_like(idle_sample, "task:")
        assert len(counts) == total
        assert [name for name, count in counts.items() if count != 1] == []
        tasks = await table_rows(idle_sample, "scheduled_task")
        assert {(row["state"], row["attempts"]) for row in tasks} == {("done", 1)}
        by_worker = {name: 0 for name in ("worker-0", "worker-1")}
        for row in tasks:
            by_worker[row["locked_by"]] += 1
        assert all(count > 0 for count in by_worker.values()), by_worker


class Probe:
    """A periodic job that measures how many copies of itself run at once."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.running = 0
        self.max_running = 0
        self.runs: list[tuple[float, float]] = []

    async def __call__(self) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        started = time.monotonic()
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
            self.runs.append((started, time.monotonic()))


class TestScheduler:
    async def test_two_schedulers_never_run_a_job_concurrently(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        probe = Probe(seconds=0.05)
        job = PeriodicJob("probe", interval_seconds=0.2, run=probe)
        databases = [Database.for_service(idle_sample.settings, "sample") for _ in range(2)]
        schedulers = [
            Scheduler(database, runtime.tables, [job], tick_seconds=0.005, worker=f"s{index}")
            for index, database in enumerate(databases)
        ]
        loops = [asyncio.create_task(scheduler.run_forever()) for scheduler in schedulers]
        try:
            await eventually(lambda: _runs(probe), lambda n: n >= 3, timeout_seconds=10)
        finally:
            for scheduler in schedulers:
                scheduler.stop()
            await asyncio.wait_for(asyncio.gather(*loops), timeout=10)
            for database in databases:
                await database.dispose()

        assert probe.max_running == 1
        for (_, ended), (started, _) in zip(probe.runs, probe.runs[1:], strict=False):
            assert started - ended >= 0.2 - 0.02  # waits its interval after each run

    async def test_a_due_job_runs_again_after_its_interval(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        probe = Probe(seconds=0)
        scheduler = Scheduler(
            runtime.database,
            runtime.tables,
            [PeriodicJob("again", interval_seconds=0.1, run=probe)],
        )
        await scheduler._register()

        assert await scheduler.run_due() == ["again"]
        assert await scheduler.run_due() == []  # not due yet
        await asyncio.sleep(0.15)
        assert await scheduler.run_due() == ["again"]
        assert len(probe.runs) == 2

    async def test_a_failing_job_records_its_error_and_is_rescheduled(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)

        async def broken() -> None:
            raise RuntimeError("job broke")

        scheduler = Scheduler(
            runtime.database,
            runtime.tables,
            [PeriodicJob("broken", interval_seconds=60, run=broken)],
        )
        await scheduler._register()

        assert await scheduler.run_due() == ["broken"]

        table = runtime.tables.job_lease
        async with runtime.database.transaction() as session:
            row = (await session.execute(select(table).where(table.c.name == "broken"))).one()
        assert "job broke" in row.last_error
        assert row.holder is None
        assert row.next_run_at > row.last_run_at


async def _runs(probe: Probe) -> int:
    return len(probe.runs)


class TestSchedulerTicks:
    async def test_a_tick_with_nothing_due_writes_nothing(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        probe = Probe(seconds=0)
        scheduler = Scheduler(
            runtime.database,
            runtime.tables,
            [PeriodicJob("hourly", interval_seconds=3600, run=probe)],
        )
        await scheduler._register()
        assert await scheduler.run_due() == ["hourly"]
        with engine_statements(runtime.database) as statements:
            for _ in range(5):
                assert await scheduler.run_due() == []

        assert statements == []
        assert len(probe.runs) == 1

    async def test_a_job_run_by_another_worker_is_not_run_again_early(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        probe = Probe(seconds=0)
        first, second = (
            Scheduler(
                runtime.database,
                runtime.tables,
                [PeriodicJob("shared", interval_seconds=0.2, run=probe)],
                worker=name,
            )
            for name in ("first", "second")
        )
        await first._register()
        assert await first.run_due() == ["shared"]
        assert await second.run_due() == []  # learns the next run time from the row
        await asyncio.sleep(0.25)
        assert await second.run_due() == ["shared"]
        assert len(probe.runs) == 2


class TestSchedulerLeases:
    async def test_a_job_whose_worker_died_mid_run_runs_again_within_one_lease(
        self, idle_sample: Platform
    ) -> None:
        runtime = runtime_of(idle_sample)
        started = asyncio.Event()

        async def dies_midway() -> None:
            started.set()
            await asyncio.sleep(3600)

        dead = Scheduler(
            runtime.database,
            runtime.tables,
            [PeriodicJob("resume", interval_seconds=0.1, run=dies_midway)],
            lease_seconds=0.5,
            worker="dead",
        )
        await dead._register()
        running = asyncio.create_task(dead.run_due())
        await started.wait()
        running.cancel()  # killed: neither released nor renewed from here on
        with contextlib.suppress(asyncio.CancelledError):
            await running
        probe = Probe(seconds=0)
        survivor = Scheduler(
            runtime.database,
            runtime.tables,
            [PeriodicJob("resume", interval_seconds=0.1, run=probe)],
            lease_seconds=0.5,
            worker="survivor",
        )

        assert await survivor.run_due() == []  # the dead worker's lease still holds
        await asyncio.sleep(0.6)
        assert await survivor.run_due() == ["resume"]  # not after the job's 300 s timeout

    async def test_a_job_longer_than_its_lease_keeps_it(self, idle_sample: Platform) -> None:
        runtime = runtime_of(idle_sample)
        probe = Probe(seconds=1.0)
        first, second = (
            Scheduler(
                runtime.database,
                runtime.tables,
                [PeriodicJob("long", interval_seconds=0.1, run=probe)],
                lease_seconds=0.3,
                worker=name,
            )
            for name in ("first", "second")
        )
        await first._register()
        running = asyncio.create_task(first.run_due())
        await asyncio.sleep(0.6)  # two leases' worth: renewed, not lapsed

        assert await second.run_due() == []
        assert await running == ["long"]
        assert probe.max_running == 1
