"""Group commit: concurrent transfer requests share one database transaction.

PostgreSQL's ceiling for one transfer per transaction is its commit rate. Like TigerBeetle's
batching, the engine queues the operations of concurrent requests and lets a few writer
tasks each take everything queued (up to `max_operations`), lock the rows involved in a
fixed order (transfers, then accounts, by id), apply the rules in memory (`Posting`), write
balances, transfers, entries and outbox events, and commit once. Each request's own
result comes back through its future only after that commit.

Requests keep their isolation: each single request is its own group, so one failing
transfer never affects another; an atomic batch is one group that applies whole or not
at all. If a shared transaction fails for an unexpected reason (a unique violation from a
concurrent process, say), its groups are retried one transaction each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import IntegrityError

from paymesh.kernel.events import Outbox
from paymesh.kernel.metrics import (
    LEDGER_GROUP_COMMIT,
    LEDGER_QUEUE_LIMIT,
    LEDGER_QUEUED,
    LEDGER_TRANSFERS,
)
from paymesh.ledger.errors import LedgerOverloaded
from paymesh.ledger.posting import (
    CreateTransfer,
    Operation,
    Outcome,
    Posting,
    Result,
)
from paymesh.ledger.writer import BatchWriter

log = structlog.get_logger("paymesh.ledger.engine")


@dataclass
class _Request:
    operations: list[Operation]
    atomic: bool
    future: asyncio.Future[list[Result]] = field(repr=False)


class TransferEngine:
    def __init__(
        self,
        writer: BatchWriter,
        outbox: Outbox,
        *,
        writers: int = 2,
        max_operations: int = 512,
        max_queued_operations: int = 100_000,
    ) -> None:
        self.writer = writer
        self.outbox = outbox
        self.writers = writers
        self.max_operations = max_operations
        self._queue: deque[_Request] = deque()
        self._ready = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._queued_operations = 0
        self.max_queued_operations = max_queued_operations
        LEDGER_QUEUE_LIMIT.set(max_queued_operations)

    async def start(self) -> None:
        self._stopping = False
        if not self._tasks:
            await self.writer.open()
            self._tasks = [
                asyncio.create_task(self._write_forever(), name=f"ledger-writer-{number}")
                for number in range(self.writers)
            ]

    async def stop(self, grace_seconds: float = 15.0) -> None:
        """Finish what is queued, then stop the writers (cancelling only stragglers)."""
        self._stopping = True
        async with self._ready:
            self._ready.notify_all()
        if self._tasks:
            _done, stragglers = await asyncio.wait(self._tasks, timeout=grace_seconds)
            for task in stragglers:
                task.cancel()
            for task in stragglers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        await self.writer.close()
        while self._queue:
            request = self._queue.popleft()
            if not request.future.done():
                request.future.cancel()
        self._queued_operations = 0

    async def submit(self, operations: list[Operation], *, atomic: bool = False) -> list[Result]:
        """Apply operations in order; returns each one's Outcome or LedgerError."""
        if not self._tasks:
            await self.start()
        if self._queued_operations + len(operations) > self.max_queued_operations:
            raise LedgerOverloaded(
                detail=f"{self._queued_operations} operations are waiting; retry shortly"
            )
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(operations, atomic, future))
        self._queued_operations += len(operations)
        LEDGER_QUEUED.set(self._queued_operations)
        async with self._ready:
            self._ready.notify()
        return await future

    def _take(self) -> list[_Request]:
        taken: list[_Request] = []
        count = 0
        while self._queue and (
            not taken or count + len(self._queue[0].operations) <= self.max_operations
        ):
            request = self._queue.popleft()
            self._queued_operations -= len(request.operations)
            taken.append(request)
            count += len(request.operations)
        LEDGER_QUEUED.set(self._queued_operations)
        return taken

    async def _write_forever(self) -> None:
        while True:
            async with self._ready:
                await self._ready.wait_for(lambda: bool(self._queue) or self._stopping)
                if not self._queue:
                    return
                requests = self._take()
                if self._queue:
                    self._ready.notify()
            await self._write(requests)

    async def _write(self, requests: list[_Request], attempt: int = 1) -> None:
        try:
            results = await self._commit(requests)
        except Exception as error:
            if len(requests) == 1:
                if attempt < 3 and _is_conflict(error):
                    # Another process inserted the same transfer id first: run it again,
                    # and it will find that transfer (a replay, or exists_with_different_fields).
                    await self._write(requests, attempt + 1)
                    return
                log.warning("ledger_write_failed", error=repr(error))
                _fail(requests[0], error)
                return
            log.warning("ledger_group_commit_failed_retrying_alone", error=repr(error))
            for request in requests:
                await self._write([request])
            return
        _count(results)
        for request, result in zip(requests, results, strict=True):
            if not request.future.done():
                request.future.set_result(result)

    async def _commit(self, requests: list[_Request]) -> list[list[Result]]:
        transfer_ids = {op.id for request in requests for op in request.operations}
        account_ids = {
            account
            for request in requests
            for op in request.operations
            if isinstance(op, CreateTransfer)
            for account in (op.debit_account_id, op.credit_account_id)
        }

        def apply(posting: Posting) -> list[list[Result]]:
            return [posting.apply_group(request.operations, request.atomic) for request in requests]

        results, posting = await self.writer.commit(transfer_ids, account_ids, apply)
        if posting.events:
            self.outbox.committed()
        return results


def _count(results: list[list[Result]]) -> None:
    """Metrics of one committed group: its size, and its operations' results (one counter
    update per result code, not per operation: a group holds up to `max_operations`)."""
    codes = Counter(
        ("ok" if result.created else "replayed") if isinstance(result, Outcome) else result.code
        for group in results
        for result in group
    )
    LEDGER_GROUP_COMMIT.observe(codes.total())
    for code, count in codes.items():
        LEDGER_TRANSFERS.labels(code).inc(count)


def _is_conflict(error: Exception) -> bool:
    """A unique violation (or serialization failure) that a retry resolves."""
    if isinstance(error, IntegrityError):
        return True
    code = getattr(error, "sqlstate", None) or getattr(
        getattr(error, "orig", None), "sqlstate", None
    )
    return code in ("23505", "40001", "40P01")


def _fail(request: _Request, error: Exception) -> None:
    if not request.future.done():
        request.future.set_exception(error)


__all__ = ["Outcome", "TransferEngine"]
