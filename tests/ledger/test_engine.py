"""The group-commit engine refuses work beyond its queue bound instead of growing without
limit, and answers every queued request once the writer gets to it."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from prometheus_client import REGISTRY

from paymesh.kernel.db import service_metadata
from paymesh.kernel.events import Outbox
from paymesh.kernel.tables import KernelTables
from paymesh.ledger.engine import TransferEngine
from paymesh.ledger.errors import LedgerOverloaded
from paymesh.ledger.posting import AccountState, CreateTransfer, Outcome, Posting


class GatedWriter:
    """A BatchWriter over in-memory accounts whose commits wait for a gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.commits = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def commit(self, transfer_ids: set[str], account_ids: set[str], apply: Any) -> Any:
        await self.gate.wait()
        self.commits += 1
        accounts = {name: AccountState(name, "USD", 0, 0, 0, 0, 0) for name in sorted(account_ids)}
        posting = Posting(accounts, {}, dt.datetime.now(dt.UTC))
        return apply(posting), posting


def create(index: int) -> CreateTransfer:
    return CreateTransfer(f"t{index}", "a", "b", 1, "USD")


class TestQueueBound:
    async def test_work_beyond_the_bound_is_refused_and_queued_work_completes(self) -> None:
        writer = GatedWriter()
        outbox = Outbox("ledger", KernelTables(service_metadata()))
        engine = TransferEngine(
            writer, outbox, writers=1, max_operations=1, max_queued_operations=3
        )
        try:
            queued = [asyncio.ensure_future(engine.submit([create(0)]))]
            await asyncio.sleep(0.05)  # the writer took it and waits at the gate
            queued += [asyncio.ensure_future(engine.submit([create(i)])) for i in (1, 2, 3)]
            await asyncio.sleep(0.05)  # three wait in the queue: the bound
            with pytest.raises(LedgerOverloaded):
                await asyncio.wait_for(engine.submit([create(99)]), timeout=5)
            writer.gate.set()
            results = await asyncio.wait_for(asyncio.gather(*queued), timeout=5)
            assert all(isinstance(result, Outcome) for (result,) in results)
            assert writer.commits == 4
            # With the queue drained, new work is accepted again.
            (result,) = await asyncio.wait_for(engine.submit([create(100)]), timeout=5)
            assert isinstance(result, Outcome)
        finally:
            await engine.stop()


class TestMetrics:
    async def test_a_group_counts_its_results_by_code_and_its_size(self) -> None:
        writer = GatedWriter()
        writer.gate.set()
        outbox = Outbox("ledger", KernelTables(service_metadata()))
        engine = TransferEngine(writer, outbox, writers=1)

        def sample(name: str, **labels: str) -> float:
            return REGISTRY.get_sample_value(name, labels) or 0.0

        before = {
            "ok": sample("paymesh_ledger_transfers_total", result="ok"),
            "same": sample("paymesh_ledger_transfers_total", result="accounts_must_be_different"),
            "groups": sample("paymesh_ledger_group_commit_operations_count"),
            "operations": sample("paymesh_ledger_group_commit_operations_sum"),
        }
        try:
            same = CreateTransfer("t-same", "a", "a", 1, "USD")
            results = await engine.submit([create(1), create(2), same])
        finally:
            await engine.stop()
        assert [type(result).__name__ for result in results] == [
            "Outcome",
            "Outcome",
            "AccountsMustBeDifferent",
        ]
        assert sample("paymesh_ledger_transfers_total", result="ok") - before["ok"] == 2
        refused = sample("paymesh_ledger_transfers_total", result="accounts_must_be_different")
        assert refused - before["same"] == 1
        assert sample("paymesh_ledger_group_commit_operations_count") - before["groups"] == 1
        assert sample("paymesh_ledger_group_commit_operations_sum") - before["operations"] == 3
