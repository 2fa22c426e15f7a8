"""Hash chains: each way of tampering with stored records or checkpoints is named exactly.

The trail here is plain data standing in for the tables; each test edits it the way someone
with write access to the database would, then asserts the first problem verify reports.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from paymesh.audit.chain import (
    GENESIS,
    ChainedFields,
    Problem,
    StoredCheckpoint,
    StoredRecord,
    canonical,
    checkpoint_hash,
    record_hash,
    verify,
    verify_streams,
)
from tests import strategies

SIZES = {"gateway": 200, "ledger": 300, "wallets": 250}


def fields(chain: str, seq: int, **changes: object) -> ChainedFields:
    base = ChainedFields(
        chain=chain,
        seq=seq,
        event_id=f"evt_{chain}_{seq}",
        type=f"{chain}.thing.happened",
        occurred_at=f"2026-12-03T17:{seq // 60 % 60:02d}:{seq % 60:02d}Z",
        recorded_at=f"2026-12-03T17:{seq // 60 % 60:02d}:{seq % 60:02d}.5Z",
        actor={"type": "service", "id": f"svc_{chain}"},
        resource=f"res_{seq}" if seq % 3 else None,
        data={"amount_minor": seq * 100, "currency": "EUR", "note": "café ✓"},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def forge(record_fields: ChainedFields, prev_hash: str) -> StoredRecord:
    """A record with a hash that is valid for its content, as anyone can compute."""
    return StoredRecord(record_fields, prev_hash, record_hash(record_fields, prev_hash))


class Trail:
    """The audit tables as lists: records per chain (by seq) and checkpoints (by id)."""

    def __init__(self) -> None:
        self.records: dict[str, list[StoredRecord]] = {}
        self.checkpoints: list[StoredCheckpoint] = []

    def append(self, chain: str, count: int) -> None:
        records = self.records.setdefault(chain, [])
        for _ in range(count):
            prev = records[-1] if records else None
            seq = prev.fields.seq + 1 if prev else self._pruned_seq(chain) + 1
            prev_hash = prev.hash if prev else self._pruned_hash(chain)
            records.append(forge(fields(chain, seq), prev_hash))

    def seal(self, pruned: dict[str, tuple[int, str]] | None = None) -> StoredCheckpoint:
        previous = self.checkpoints[-1] if self.checkpoints else None
        carried = dict(previous.pruned) if previous else {}
        carried.update(pruned or {})
        heads = {c: (r[-1].fields.seq, r[-1].hash) for c, r in self.records.items() if r}
        prev_hash = previous.hash if previous else GENESIS
        sealed_at = f"2026-12-03T18:00:{len(self.checkpoints):02d}Z"
        checkpoint = StoredCheckpoint(
            id=len(self.checkpoints) + 1,
            heads=heads,
            pruned=carried,
            prev_hash=prev_hash,
            hash=checkpoint_hash(heads, prev_hash, carried, sealed_at),
            sealed_at=sealed_at,
        )
        self.checkpoints.append(checkpoint)
        return checkpoint

    def prune(self, chain: str, through_seq: int) -> None:
        """Retention: a checkpoint records what goes, then the prefix is deleted."""
        records = self.records[chain]
        last = next(r for r in records if r.fields.seq == through_seq)
        self.seal({chain: (through_seq, last.hash)})
        self.records[chain] = [r for r in records if r.fields.seq > through_seq]

    def record(self, chain: str, seq: int) -> StoredRecord:
        return next(r for r in self.records[chain] if r.fields.seq == seq)

    def replace(self, chain: str, seq: int, record: StoredRecord) -> None:
        records = self.records[chain]
        index = next(i for i, r in enumerate(records) if r.fields.seq == seq)
        records[index] = record

    def delete(self, chain: str, seq: int) -> None:
        self.records[chain] = [r for r in self.records[chain] if r.fields.seq != seq]

    def verify_problem(self) -> Problem | None:
        return verify(self.records, self.checkpoints).first_problem

    def _pruned_seq(self, chain: str) -> int:
        return self.checkpoints[-1].pruned.get(chain, (0, GENESIS))[0] if self.checkpoints else 0

    def _pruned_hash(self, chain: str) -> str:
        if not self.checkpoints:
            return GENESIS
        return self.checkpoints[-1].pruned.get(chain, (0, GENESIS))[1]


def sorted_by_seq(records: list[StoredRecord]) -> list[StoredRecord]:
    # The repository reads `ORDER BY seq` (ties by insertion order, as a row id would give).
    return sorted(records, key=lambda record: record.fields.seq)


@pytest.fixture
def trail() -> Trail:
    """Three chains, a checkpoint half way and one over every head."""
    trail = Trail()
    for chain, size in SIZES.items():
        trail.append(chain, size // 2)
    trail.seal()
    for chain, size in SIZES.items():
        trail.append(chain, size - size // 2)
    trail.seal()
    return trail


def problem(chain: str | None, seq: int | None, kind: str) -> tuple[str | None, int | None, str]:
    return (chain, seq, kind)


def named(found: Problem | None) -> tuple[str | None, int | None, str] | None:
    return (found.chain, found.seq, found.kind) if found else None


class TestCanonical:
    def test_is_rfc8785_sorted_compact_utf8(self) -> None:
        data = canonical(fields("ledger", 1))
        assert data.startswith(b'{"actor":{"id":"svc_ledger","type":"service"},"chain":"ledger",')
        assert "café ✓".encode() in data
        assert b" " not in data.replace("café ✓".encode(), b"")

    def test_same_fields_same_bytes(self) -> None:
        reordered_data = fields("ledger", 1, data={"note": "café ✓", "currency": "EUR"})
        same_data = fields("ledger", 1, data={"currency": "EUR", "note": "café ✓"})
        assert canonical(reordered_data) == canonical(same_data)

    def test_record_hash_covers_prev_hash_and_every_field(self) -> None:
        base = fields("ledger", 7)
        digest = record_hash(base, GENESIS)
        assert len(digest) == 64
        assert record_hash(base, "1" * 64) != digest
        for name, value in [("seq", 8), ("chain", "wallets"), ("resource", "res_x")]:
            changed = dataclasses.replace(base, **{name: value})  # type: ignore[arg-type]
            assert record_hash(changed, GENESIS) != digest

    def test_checkpoint_hash_none_pruned_is_empty_pruned(self) -> None:
        heads = {"ledger": (3, "a" * 64)}
        without = checkpoint_hash(heads, GENESIS, None, "2026-12-03T18:00:00Z")
        assert without == checkpoint_hash(heads, GENESIS, {}, "2026-12-03T18:00:00Z")
        assert without != checkpoint_hash(
            heads, GENESIS, {"ledger": (1, "b" * 64)}, "2026-12-03T18:00:00Z"
        )


json_values = strategies.json_values(integer_bits=60)


class TestCanonicalMatchesReference:
    """The orjson fast path must give exactly the bytes of the reference RFC 8785 encoder."""

    @settings(max_examples=400, deadline=None)
    @given(data=st.dictionaries(st.text(max_size=6), json_values, max_size=5), actor=json_values)
    def test_same_bytes_as_rfc8785(self, data: dict[str, object], actor: object) -> None:
        record = fields("ledger", 3, data=data, actor={"who": actor})
        as_dict = dataclasses.asdict(record)
        try:
            expected = rfc8785.dumps(as_dict)
        except (rfc8785.CanonicalizationError, UnicodeEncodeError):
            with pytest.raises((rfc8785.CanonicalizationError, UnicodeEncodeError)):
                canonical(record)
            return
        assert canonical(record) == expected

    @pytest.mark.parametrize(
        "data",
        [
            {"\ue000": 1, "\U0001f600": 2},  # UTF-16 order differs from code point order
            {"amount": 1.5, "rate": 1e21, "tiny": 5e-324},
            {"big": 2**53, "ok": 2**53 - 1},
            {"control": "\x00\x1f\u2028", "tuple": (1, 2)},
        ],
    )
    def test_edge_values(self, data: dict[str, object]) -> None:
        record = fields("ledger", 3, data=data)
        try:
            expected = rfc8785.dumps(dataclasses.asdict(record))
        except rfc8785.CanonicalizationError:
            with pytest.raises(rfc8785.CanonicalizationError):
                canonical(record)
            return
        assert canonical(record) == expected


class TestVerifyIntact:
    def test_ok_with_counts(self, trail: Trail) -> None:
        result = verify(trail.records, trail.checkpoints)
        assert result.ok
        assert result.first_problem is None
        assert (result.records, result.chains, result.checkpoints) == (750, 3, 2)

    def test_streams_one_shot_iterators(self, trail: Trail) -> None:
        def stream(chain: str) -> Iterator[StoredRecord]:
            yield from trail.records[chain]

        result = verify({chain: stream(chain) for chain in trail.records}, trail.checkpoints)
        assert result.ok
        assert result.records == 750

    def test_records_after_last_checkpoint_verified_by_links(self, trail: Trail) -> None:
        trail.append("ledger", 10)
        assert verify(trail.records, trail.checkpoints).ok
        trail.replace("ledger", 305, forge(fields("ledger", 305, type="x"), "f" * 64))
        assert named(trail.verify_problem()) == problem("ledger", 305, "inserted")

    def test_no_checkpoints_at_all(self) -> None:
        trail = Trail()
        trail.append("ledger", 5)
        assert verify(trail.records, []).ok


class TestChangedRecord:
    def test_changed_field_of_middle_record(self, trail: Trail) -> None:
        original = trail.record("ledger", 150)
        tampered = dataclasses.replace(original.fields, data={"amount_minor": 1})
        trail.replace("ledger", 150, dataclasses.replace(original, fields=tampered))
        found = trail.verify_problem()
        assert named(found) == problem("ledger", 150, "changed")

    def test_changed_and_rehashed_middle_record(self, trail: Trail) -> None:
        original = trail.record("ledger", 140)
        tampered = dataclasses.replace(original.fields, actor={"type": "user", "id": "usr_x"})
        trail.replace("ledger", 140, forge(tampered, original.prev_hash))
        assert named(trail.verify_problem()) == problem("ledger", 140, "changed")

    def test_changed_and_rehashed_record_sealed_as_a_head(self, trail: Trail) -> None:
        original = trail.record("ledger", 150)  # checkpoint 1 sealed the ledger at 150
        tampered = dataclasses.replace(original.fields, actor={"type": "user", "id": "usr_x"})
        trail.replace("ledger", 150, forge(tampered, original.prev_hash))
        assert named(trail.verify_problem()) == problem("ledger", 150, "checkpoint_mismatch")

    def test_changed_prev_hash(self, trail: Trail) -> None:
        original = trail.record("ledger", 150)
        trail.replace("ledger", 150, dataclasses.replace(original, prev_hash="e" * 64))
        assert named(trail.verify_problem()) == problem("ledger", 150, "changed")

    def test_rewritten_suffix_caught_by_checkpoint_head(self, trail: Trail) -> None:
        # Re-hashing every record from 120 on keeps all links intact; only the seal can tell.
        records = trail.records["ledger"]
        prev_hash = records[118].hash
        for index in range(119, len(records)):
            changed = records[index].fields
            if changed.seq == 120:
                changed = dataclasses.replace(changed, data={"amount_minor": 0})
            records[index] = forge(changed, prev_hash)
            prev_hash = records[index].hash
        found = trail.verify_problem()
        assert named(found) == problem("ledger", 150, "checkpoint_mismatch")
        assert found is not None and "checkpoint 1" in found.detail

    @settings(max_examples=60, deadline=None)
    @given(
        seq=st.integers(min_value=1, max_value=300),
        amount=st.integers(min_value=-(10**12), max_value=10**12),
    )
    def test_any_changed_record_is_named(self, seq: int, amount: int) -> None:
        trail = Trail()
        trail.append("ledger", 300)
        trail.seal()
        original = trail.record("ledger", seq)
        if original.fields.data["amount_minor"] == amount:
            amount += 1
        tampered = dataclasses.replace(original.fields, data={"amount_minor": amount})
        trail.replace("ledger", seq, dataclasses.replace(original, fields=tampered))
        assert named(trail.verify_problem()) == problem("ledger", seq, "changed")

    def test_content_that_cannot_be_canonicalized(self, trail: Trail) -> None:
        original = trail.record("ledger", 150)
        tampered = dataclasses.replace(original.fields, data={"amount_minor": 2**63})
        trail.replace("ledger", 150, dataclasses.replace(original, fields=tampered))
        assert named(trail.verify_problem()) == problem("ledger", 150, "changed")


class TestDeletedRecord:
    def test_deleted_middle_record(self, trail: Trail) -> None:
        trail.delete("ledger", 150)
        assert named(trail.verify_problem()) == problem("ledger", 150, "deleted")

    def test_deleted_several_middle_records(self, trail: Trail) -> None:
        for seq in (150, 151, 152):
            trail.delete("ledger", seq)
        found = trail.verify_problem()
        assert named(found) == problem("ledger", 150, "deleted")
        assert found is not None and "150..152" in found.detail

    def test_deleted_first_record(self, trail: Trail) -> None:
        trail.delete("ledger", 1)
        assert named(trail.verify_problem()) == problem("ledger", 1, "deleted")

    def test_deleted_last_record_covered_by_checkpoint(self, trail: Trail) -> None:
        trail.delete("ledger", 300)
        found = trail.verify_problem()
        assert named(found) == problem("ledger", 300, "checkpoint_mismatch")
        assert found is not None and "checkpoint 2" in found.detail

    def test_deleted_whole_chain_covered_by_checkpoint(self, trail: Trail) -> None:
        del trail.records["ledger"]
        assert named(trail.verify_problem()) == problem("ledger", 1, "checkpoint_mismatch")

    def test_deleted_tail_after_last_checkpoint_goes_unnoticed(self, trail: Trail) -> None:
        # The documented limit: records newer than the last checkpoint rest on links alone.
        trail.append("ledger", 5)
        trail.delete("ledger", 305)
        assert verify(trail.records, trail.checkpoints).ok


class TestInsertedRecord:
    def test_forged_record_making_room_by_renumbering(self, trail: Trail) -> None:
        # A unique (chain, seq) forces the forger to shift the later records up by one.
        records = trail.records["ledger"]
        shifted = [
            dataclasses.replace(r, fields=dataclasses.replace(r.fields, seq=r.fields.seq + 1))
            if r.fields.seq > 150
            else r
            for r in records
        ]
        forged = forge(
            fields("ledger", 151, type="ledger.refund.forged"), trail.record("ledger", 150).hash
        )
        trail.records["ledger"] = sorted_by_seq([*shifted, forged])
        assert named(trail.verify_problem()) == problem("ledger", 151, "inserted")

    def test_forged_record_with_duplicate_seq(self, trail: Trail) -> None:
        forged = forge(
            fields("ledger", 151, type="ledger.refund.forged"), trail.record("ledger", 150).hash
        )
        trail.records["ledger"] = sorted_by_seq([*trail.records["ledger"], forged])
        found = trail.verify_problem()
        assert named(found) == problem("ledger", 151, "inserted")
        assert found is not None and "evt_ledger_151" in found.detail

    def test_forged_record_that_links_to_nothing(self, trail: Trail) -> None:
        trail.replace("ledger", 151, forge(fields("ledger", 151, type="x"), "d" * 64))
        assert named(trail.verify_problem()) == problem("ledger", 151, "inserted")

    def test_record_moved_from_another_chain(self, trail: Trail) -> None:
        stranger = trail.record("wallets", 151)
        trail.replace("ledger", 151, stranger)
        assert named(trail.verify_problem()) == problem("ledger", 151, "changed")


class TestReorderedRecords:
    @staticmethod
    def swap(trail: Trail, chain: str, first: int, second: int) -> None:
        """Exchange two records' seq, the only way to reorder rows read by seq."""
        a, b = trail.record(chain, first), trail.record(chain, second)
        trail.replace(
            chain, first, dataclasses.replace(b, fields=dataclasses.replace(b.fields, seq=first))
        )
        trail.replace(
            chain, second, dataclasses.replace(a, fields=dataclasses.replace(a.fields, seq=second))
        )

    def test_swapped_adjacent_records(self, trail: Trail) -> None:
        self.swap(trail, "ledger", 150, 151)
        found = trail.verify_problem()
        assert named(found) == problem("ledger", 150, "reordered")
        assert found is not None and "evt_ledger_151" in found.detail

    def test_swapped_distant_records(self, trail: Trail) -> None:
        self.swap(trail, "ledger", 40, 260)
        found = trail.verify_problem()
        assert named(found) == problem("ledger", 40, "reordered")
        assert found is not None and "seq 260" in found.detail

    def test_stream_out_of_seq_order(self, trail: Trail) -> None:
        # Rows not read in seq order: the gap is seen before the late record.
        records = trail.records["ledger"]
        records[149], records[150] = records[150], records[149]
        assert named(trail.verify_problem()) == problem("ledger", 150, "deleted")


class TestCheckpoints:
    def test_changed_checkpoint_head(self, trail: Trail) -> None:
        first = trail.checkpoints[0]
        heads = {**first.heads, "ledger": (149, trail.record("ledger", 149).hash)}
        trail.checkpoints[0] = dataclasses.replace(first, heads=heads)
        found = trail.verify_problem()
        assert named(found) == problem(None, None, "checkpoint_changed")
        assert found is not None and "checkpoint 1" in found.detail

    def test_changed_and_rehashed_checkpoint_breaks_the_next(self, trail: Trail) -> None:
        first = trail.checkpoints[0]
        heads = {**first.heads, "ledger": (149, trail.record("ledger", 149).hash)}
        rehashed = checkpoint_hash(heads, first.prev_hash, first.pruned, first.sealed_at)
        trail.checkpoints[0] = dataclasses.replace(first, heads=heads, hash=rehashed)
        found = trail.verify_problem()
        assert named(found) == problem(None, None, "checkpoint_changed")
        assert found is not None and "checkpoint 2" in found.detail

    def test_changed_and_rehashed_last_checkpoint_disagrees_with_records(
        self, trail: Trail
    ) -> None:
        last = trail.checkpoints[-1]
        heads = {**last.heads, "ledger": (300, "c" * 64)}
        rehashed = checkpoint_hash(heads, last.prev_hash, last.pruned, last.sealed_at)
        trail.checkpoints[-1] = dataclasses.replace(last, heads=heads, hash=rehashed)
        assert named(trail.verify_problem()) == problem("ledger", 300, "checkpoint_mismatch")

    def test_deleted_checkpoint(self, trail: Trail) -> None:
        trail.seal()
        del trail.checkpoints[1]
        found = trail.verify_problem()
        assert named(found) == problem(None, None, "checkpoint_changed")
        assert found is not None and "checkpoint 3" in found.detail


class TestRetention:
    def test_pruned_prefix_recorded_by_checkpoint_still_verifies(self, trail: Trail) -> None:
        trail.prune("ledger", 120)
        trail.append("ledger", 10)
        trail.seal()
        result = verify(trail.records, trail.checkpoints)
        assert result.ok, result.first_problem
        assert result.records == 750 - 120 + 10

    def test_pruned_again_later(self, trail: Trail) -> None:
        trail.prune("ledger", 50)
        trail.prune("ledger", 200)
        trail.prune("gateway", 10)
        assert verify(trail.records, trail.checkpoints).ok

    def test_record_past_retention_not_yet_deleted(self, trail: Trail) -> None:
        kept = list(trail.records["ledger"])
        trail.prune("ledger", 120)
        trail.records["ledger"] = kept
        assert verify(trail.records, trail.checkpoints).ok

    def test_deleted_prefix_without_checkpoint(self, trail: Trail) -> None:
        trail.records["ledger"] = [r for r in trail.records["ledger"] if r.fields.seq > 120]
        assert named(trail.verify_problem()) == problem("ledger", 1, "deleted")

    def test_deleted_first_retained_record(self, trail: Trail) -> None:
        trail.prune("ledger", 120)
        trail.delete("ledger", 121)
        assert named(trail.verify_problem()) == problem("ledger", 121, "deleted")

    def test_changed_first_retained_record(self, trail: Trail) -> None:
        trail.prune("ledger", 120)
        original = trail.record("ledger", 121)
        tampered = dataclasses.replace(original.fields, data={})
        trail.replace("ledger", 121, dataclasses.replace(original, fields=tampered))
        assert named(trail.verify_problem()) == problem("ledger", 121, "changed")


class TestFirstProblem:
    def test_first_chain_by_name_then_first_seq(self, trail: Trail) -> None:
        trail.delete("wallets", 10)
        trail.delete("ledger", 200)
        trail.delete("ledger", 100)
        result = verify(trail.records, trail.checkpoints)
        assert not result.ok
        assert named(result.first_problem) == problem("ledger", 100, "deleted")

    def test_checkpoint_problems_come_first(self, trail: Trail) -> None:
        trail.delete("gateway", 10)
        trail.checkpoints[1] = dataclasses.replace(
            trail.checkpoints[1], sealed_at="2030-01-01T00:00:00Z"
        )
        assert named(trail.verify_problem()) == problem(None, None, "checkpoint_changed")


class TestVerifyStreams:
    @staticmethod
    async def stream(records: list[StoredRecord], closed: list[str]) -> AsyncIterator[StoredRecord]:
        try:
            for record in records:
                await asyncio.sleep(0)
                yield record
        finally:
            closed.append(records[0].fields.chain)

    async def test_ok_over_async_streams(self, trail: Trail) -> None:
        closed: list[str] = []
        streams = {c: self.stream(r, closed) for c, r in trail.records.items()}
        result = await verify_streams(streams, trail.checkpoints, batch=64)
        assert result.ok
        assert result.records == 750
        assert sorted(closed) == sorted(SIZES)

    async def test_names_first_problem_and_closes_unread_streams(self, trail: Trail) -> None:
        trail.delete("gateway", 70)
        closed: list[str] = []
        streams = {c: self.stream(r, closed) for c, r in trail.records.items()}
        result = await verify_streams(streams, trail.checkpoints, batch=64)
        assert named(result.first_problem) == problem("gateway", 70, "deleted")
        assert sorted(closed) == ["gateway"]  # the others never started, nothing to release
