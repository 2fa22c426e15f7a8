"""Background work claimed from the database, so any number of workers can run.

* `TaskQueue`: one-off tasks (`enqueue` in the caller's transaction, run later). Workers
  claim due rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite serialises writers),
  under a lease, so two workers never take the same row; a crashed worker's lease ends and
  another worker resumes the task.
* `Scheduler`: periodic jobs; a job runs on one worker at a time, guarded by a lease row
  that the running worker renews: a worker killed mid-run lets go within one short lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import (
    Database,
    any_due,
    due_keys,
    insert_ignoring_conflicts,
    mark_for_commit,
    utcnow,
)
from paymesh.kernel.events import pause, woken
from paymesh.kernel.ids import new_id
from paymesh.kernel.tables import KernelTables

log = structlog.get_logger("paymesh.jobs")

TASK_ENQUEUED = "task_enqueued"
"""The `mark_for_commit` mark of a transaction that enqueued tasks."""

TaskHandler = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id('wrk')[-6:]}"


class TaskQueue:
    def __init__(
        self,
        database: Database,
        tables: KernelTables,
        handlers: Mapping[str, TaskHandler],
        *,
        lease_seconds: float = 60.0,
        retry_base_seconds: float = 1.0,
        interval_seconds: float = 0.5,
        worker: str | None = None,
    ) -> None:
        self.database = database
        self.table = tables.task
        self.handlers = dict(handlers)
        self.lease_seconds = lease_seconds
        self.retry_base_seconds = retry_base_seconds
        self.interval_seconds = interval_seconds
        self.worker = worker or worker_name()
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        database.wake_on_commit(TASK_ENQUEUED, self._wake.set)
        moment = bindparam("now", type_=self.table.c.run_at.type)
        self._any_due = any_due(self.table, _task_is_due(self.table, moment))

    async def enqueue(
        self,
        session: AsyncSession,
        kind: str,
        payload: dict[str, Any],
        *,
        run_at: dt.datetime | None = None,
        max_attempts: int = 10,
    ) -> str:
        """Add a task in the caller's transaction; it runs only if that transaction commits."""
        if kind not in self.handlers:
            raise ValueError(f"no handler for task kind {kind!r}")
        task_id = new_id("tsk")
        now = utcnow()
        await session.execute(
            self.table.insert().values(
                id=task_id,
                kind=kind,
                payload=payload,
                state="pending",
                run_at=run_at or now,
                max_attempts=max_attempts,
                created_at=now,
            )
        )
        mark_for_commit(session, TASK_ENQUEUED)  # wakes this process's workers at commit
        return task_id

    async def claim(self, limit: int = 10, *, due_known: bool = False) -> list[dict[str, Any]]:
        table = self.table
        now = utcnow()
        # Most polls find nothing due: asked on the direct read path first (kernel/db.py),
        # unless an enqueue in this process just woke the worker.
        if not due_known and await self.database.reads.one(self._any_due, now=now) is None:
            return []
        due = due_keys(
            table,
            _task_is_due(table, now),
            order_by=table.c.run_at,
            limit=limit,
            postgres=self.database.is_postgres,
        )
        async with self.database.transaction() as session:
            rows = await session.execute(
                update(table)
                .where(table.c.id.in_(due))
                .values(
                    state="running",
                    locked_by=self.worker,
                    locked_until=now + dt.timedelta(seconds=self.lease_seconds),
                    attempts=table.c.attempts + 1,
                )
                .returning(*table.c)
            )
            claimed = [dict(row._mapping) for row in rows]
        return sorted(claimed, key=lambda task: (task["run_at"], task["id"]))  # oldest first

    async def run_once(self, limit: int = 10, *, due_known: bool = False) -> int:
        tasks = await self.claim(limit, due_known=due_known)
        for task in tasks:
            await self._run(task)
        return len(tasks)

    async def _run(self, task: dict[str, Any]) -> None:
        table = self.table
        mine = (table.c.id == task["id"]) & (table.c.locked_by == self.worker)
        try:
            async with self.database.transaction() as session:
                await self.handlers[task["kind"]](session, task["payload"])
                await session.execute(
                    update(table)
                    .where(mine)
                    .values(state="done", finished_at=utcnow(), locked_until=None)
                )
        except Exception as error:
            failed = task["attempts"] >= task["max_attempts"]
            log.warning("task_failed", task_id=task["id"], kind=task["kind"], error=repr(error))
            delay = self.retry_base_seconds * 2 ** min(task["attempts"], 16)
            async with self.database.transaction() as session:
                await session.execute(
                    update(table)
                    .where(mine)
                    .values(
                        state="failed" if failed else "pending",
                        run_at=utcnow() + dt.timedelta(seconds=delay),
                        locked_until=None,
                        last_error=repr(error)[:4000],
                        finished_at=utcnow() if failed else None,
                    )
                )

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    async def run_forever(self) -> None:
        """Claim and run due tasks until stopped. A service with no task kinds has nothing
        to claim (`enqueue` refuses unknown kinds), so its queue does not poll at all.

        Between rounds the worker waits for the interval, or less: a task enqueued in this
        process wakes it at commit. The interval still bounds the wait for tasks enqueued
        by other processes, and for retries coming due."""
        if not self.handlers:
            return
        woke = False
        while not self.stopping.is_set():
            try:
                due_known = woke
                while await self.run_once(due_known=due_known) and not self.stopping.is_set():
                    due_known = True
            except Exception:
                log.exception("task_queue_error")
            woke = await woken(self._wake, self.interval_seconds)


def _task_is_due(table: Table, now: Any) -> ColumnElement[bool]:
    """Pending and due, or running under a lease that ended (its worker died)."""
    return or_(
        (table.c.state == "pending") & (table.c.run_at <= now),
        (table.c.state == "running") & (table.c.locked_until < now),
    )


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[Any]]
    timeout_seconds: float = 300.0


class Scheduler:
    """Runs each periodic job when due, on exactly one worker at a time."""

    def __init__(
        self,
        database: Database,
        tables: KernelTables,
        jobs: list[PeriodicJob],
        *,
        tick_seconds: float = 0.25,
        lease_seconds: float = 15.0,
        worker: str | None = None,
    ) -> None:
        self.database = database
        self.table = tables.job_lease
        self.lease_seconds = lease_seconds
        self.jobs = {job.name: job for job in jobs}
        self.tick_seconds = tick_seconds
        self.worker = worker or worker_name()
        self.stopping = asyncio.Event()
        self._known_next_run: dict[str, dt.datetime | None] = {}

    async def _register(self) -> None:
        async with self.database.transaction() as session:
            for job in self.jobs.values():
                await session.execute(
                    insert_ignoring_conflicts(session, self.table).values(
                        name=job.name, next_run_at=utcnow()
                    )
                )

    async def _acquire(self, job: PeriodicJob) -> bool:
        table = self.table
        now = utcnow()
        async with self.database.transaction() as session:
            result = await session.execute(
                update(table)
                .where(
                    table.c.name == job.name,
                    table.c.next_run_at <= now,
                    or_(table.c.lease_until.is_(None), table.c.lease_until < now),
                )
                .values(holder=self.worker, lease_until=now + self._lease(job))
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _lease(self, job: PeriodicJob) -> dt.timedelta:
        return dt.timedelta(seconds=min(job.timeout_seconds, self.lease_seconds))

    async def _keep_lease(self, job: PeriodicJob) -> None:
        """Renew the lease while the job runs. A worker that dies (SIGKILL, OOM, power)
        stops renewing, so another worker, or this one restarted, runs the job again
        within one lease rather than after the job's whole timeout (the payments
        recovery job is what must run after a crash)."""
        table = self.table
        while True:
            await asyncio.sleep(self._lease(job).total_seconds() / 3)
            try:
                async with self.database.transaction() as session:
                    await session.execute(
                        update(table)
                        .where(table.c.name == job.name, table.c.holder == self.worker)
                        .values(lease_until=utcnow() + self._lease(job))
                    )
            except Exception:
                log.warning("job_lease_renewal_failed", job=job.name, exc_info=True)

    async def _release(self, job: PeriodicJob, error: str | None) -> None:
        table = self.table
        now = utcnow()
        async with self.database.transaction() as session:
            await session.execute(
                update(table)
                .where(table.c.name == job.name, table.c.holder == self.worker)
                .values(
                    holder=None,
                    lease_until=None,
                    last_run_at=now,
                    next_run_at=now + dt.timedelta(seconds=job.interval_seconds),
                    last_error=error,
                )
            )

    async def _next_run_at(self, job: PeriodicJob) -> dt.datetime | None:
        async with self.database.transaction(read_only=True) as session:
            row = (
                await session.execute(
                    select(self.table.c.next_run_at, self.table.c.lease_until).where(
                        self.table.c.name == job.name
                    )
                )
            ).first()
        if row is None:
            return None
        next_run_at: dt.datetime = row.next_run_at
        lease_until: dt.datetime | None = row.lease_until
        return next_run_at if lease_until is None else max(next_run_at, lease_until)

    async def run_due(self) -> list[str]:
        """Run every job that is due and not running elsewhere; returns the names run.

        A job is tried only once the time this worker last saw for its next run has come
        (the time only ever moves later, whoever runs the job), so a tick with nothing
        due writes nothing: the scheduler does not take the SQLite writer's turn, or a
        PostgreSQL round trip per job, four times a second."""
        ran = []
        now = utcnow()
        for job in self.jobs.values():
            known = self._known_next_run.get(job.name)
            if known is not None and known > now:
                continue
            if not await self._acquire(job):
                self._known_next_run[job.name] = await self._next_run_at(job)
                continue
            error = None
            keeper = asyncio.create_task(self._keep_lease(job))
            try:
                async with asyncio.timeout(job.timeout_seconds):
                    await job.run()
            except Exception as failure:
                error = repr(failure)[:4000]
                log.exception("periodic_job_failed", job=job.name)
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            await self._release(job, error)
            self._known_next_run[job.name] = utcnow() + dt.timedelta(seconds=job.interval_seconds)
            ran.append(job.name)
        return ran

    def stop(self) -> None:
        self.stopping.set()

    async def run_forever(self) -> None:
        await self._register()
        while not self.stopping.is_set():
            try:
                await self.run_due()
            except Exception:
                log.exception("scheduler_error")
            await pause(self.stopping, self.tick_seconds)
