"""Group commit for units of work: concurrent requests' short writes share one transaction.

A request's transaction costs about as much CPU to open and commit (session, BEGIN,
COMMIT, the driver's and SQLAlchemy's bookkeeping; ~0.2 ms on SQLite) as a few statements
of real work, and on PostgreSQL each commit waits for its WAL flush. When many requests
each write a few rows (a risk decision), `GroupCommit.run(work)` queues the work; one
writer task takes everything queued (up to `max_batch`), runs each work in turn on one
session, commits once, and only then hands each request its result. A request's answer
therefore always describes committed data, as with its own transaction.

Isolation is kept by order and by retry, not by savepoints:
- works run one after another, so each sees the writes of those before it in the batch
  (a customer's two concurrent payments are judged one after the other, as with locks);
- works are sorted by their `order` key first, so transactions that take row or advisory
  locks per key take them in the same order (no deadlocks between the batches in flight
  at once, here or in other replicas);
- if any work raises, or the commit fails, the batch's transaction is rolled back and
  each of its works runs again alone, in a transaction of its own: a failing work fails
  only its own request. A work must therefore do nothing outside its session that could
  not be done twice (no calls to other services, no metrics): gather first, then submit.

A group may also take plain items and one `handle(session, items)` that runs a whole
batch's items at once, so that a batch of N costs one statement where N works would cost
N each (risk reads all its customers' velocity in one statement and writes all its
decisions in another). The rules above hold for `handle` as for works: it runs on the
batch's session only, and may run again for each item alone.

The ledger has its own group commit (ledger/engine.py) because its rules run in memory
over locked rows; this one is for services whose work is a handful of statements.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import Database
from paymesh.kernel.held_connection import HeldConnections
from paymesh.kernel.metrics import GROUP_COMMIT_SIZE

log = structlog.get_logger("paymesh.kernel.groupcommit")

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[T]]
Handle = Callable[[AsyncSession, list[Any]], Awaitable[list[Any]]]


async def _each_in_turn(session: AsyncSession, works: list[Any]) -> list[Any]:
    """The default `handle`: each item is a work, run one after another."""
    return [await work(session) for work in works]


@dataclass
class _Pending:
    work: Any
    """A `Work`, or an item for the group's `handle`."""
    order: str
    future: asyncio.Future[Any] = field(repr=False)


class GroupCommit:
    def __init__(
        self,
        database: Database,
        name: str,
        *,
        max_batch: int = 64,
        writers: int = 1,
        handle: Handle | None = None,
        before_commit: Callable[[list[Any]], None] | None = None,
    ) -> None:
        """`writers`: batches in flight at once. One by default: on SQLite there is one
        writer per database anyway; on PostgreSQL more batches in flight means smaller
        ones (more commits per work), which cost more CPU than the overlapped round trips
        saved when the works contend for the same locks (measured: bench/README.md).

        `handle(session, items)`: runs a batch's items (each given to `run`) and returns
        their results in the same order; without it each item is a `Work`.

        `before_commit(results)`: called once a batch's works have all run, before its
        commit (a fault-injection point for the crash tests)."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.database = database
        self.name = name
        self.max_batch = max_batch
        self.writers = writers
        if self.writers < 1:
            raise ValueError("writers must be at least 1")
        self.handle: Handle = handle or _each_in_turn
        # PostgreSQL: each writer's batches run on a connection it keeps, BEGIN and COMMIT
        # sent on the driver (kernel/held_connection.py): a fifth of a lone request's CPU.
        self._held = HeldConnections(database) if database.is_postgres else None
        self.before_commit = before_commit
        self._queue: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        """Set while nothing is queued or being written."""
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0
        self._stopped = False

    async def run(self, work: Work[T] | Any, *, order: str = "") -> T:
        """`work(session)`'s result (with a `handle`: the item's) once the transaction it
        ran in has committed."""
        if self._stopped:
            raise RuntimeError(f"group commit {self.name} is stopped")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(work, order, future))
        if self._idle is not None:
            self._idle.clear()
        if not self._tasks:
            self._wake = asyncio.Event()
            self._idle = asyncio.Event()
            self._tasks = [
                asyncio.create_task(self._write_forever(), name=f"group-{self.name}-{number}")
                for number in range(self.writers)
            ]
        assert self._wake is not None
        self._wake.set()
        return await future

    async def stop(self, grace_seconds: float = 15.0) -> None:
        """Finish what is queued (for up to `grace_seconds`), then stop the writer; works
        still queued then are cancelled, and so is their callers' wait."""
        self._stopped = True
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        assert self._idle is not None
        idle = asyncio.ensure_future(self._idle.wait())
        # Until the writers are idle, or one of them ended (only a BaseException ends
        # one), or the grace period is over.
        await asyncio.wait(
            [idle, *tasks], timeout=grace_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        idle.cancel()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in self._queue:
            if not pending.future.done():
                pending.future.cancel()
        self._queue.clear()
        if self._held is not None:
            await self._held.close()

    async def _write_forever(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if not self._busy:
                    assert self._idle is not None
                    self._idle.set()
                await self._wake.wait()
                self._wake.clear()
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                # A request that went away (its client disconnected) is not run.
                batch = [pending for pending in batch if not pending.future.done()]
                if not batch:
                    continue
                self._busy += 1
                try:
                    await self._write(batch)
                except BaseException:
                    for pending in batch:  # stopped mid-batch: those not yet answered
                        if not pending.future.done():
                            pending.future.cancel()
                    raise
                finally:
                    self._busy -= 1

    async def _write(self, batch: list[_Pending]) -> None:
        batch.sort(key=lambda pending: pending.order)
        try:
            results = await self._transaction(batch)
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0], error=error)
                return
            log.info("group_commit_retrying_alone", group=self.name, works=len(batch))
            for pending in batch:
                try:
                    (result,) = await self._transaction([pending])
                except Exception as alone:
                    _settle(pending, error=alone)
                else:
                    _settle(pending, result=result)
            return
        GROUP_COMMIT_SIZE.labels(self.name).observe(len(batch))
        for pending, result in zip(batch, results, strict=True):
            _settle(pending, result=result)

    async def _transaction(self, batch: list[_Pending]) -> list[Any]:
        unit = self._held.transaction() if self._held is not None else self.database.transaction()
        async with unit as session:
            results = await self.handle(session, [pending.work for pending in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"group {self.name}: {len(results)} results for {len(batch)}")
            if self.before_commit is not None:
                self.before_commit(results)
            return results


def _settle(pending: _Pending, *, result: Any = None, error: BaseException | None = None) -> None:
    if pending.future.done():
        return
    if error is not None:
        pending.future.set_exception(error)
    else:
        pending.future.set_result(result)
