"""Hash chains over audit records, and their verification.

Each source service writes its own chain (`chain` = the service), so writers never share one
global lock; a periodic checkpoint seals every chain head at once and is itself chained to the
previous checkpoint. Everything here is a pure function over plain data: the audit repository
stores and loads the rows, this module only hashes and checks them.

A record's hash is ``sha256(prev_hash || RFC 8785 canonical JSON of its fields)``, hex. Links
alone catch a changed, deleted, inserted or reordered record anywhere but at the end of a chain;
checkpoint heads catch truncation and wholesale rewrites of what they cover. Records after the
last checkpoint are protected by links only.

Retention deletes records 1..k of a chain only after a checkpoint records ``pruned[chain] =
(k, hash of k)``; verification then starts at k + 1 with ``prev_hash`` = that hash.
Checkpoints themselves are never pruned (they are one small row per period).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import rfc8785

GENESIS = "0" * 64

ProblemKind = Literal[
    "changed",
    "deleted",
    "inserted",
    "reordered",
    "broken_link",
    "checkpoint_mismatch",
    "checkpoint_changed",
]


@dataclass(frozen=True)
class ChainedFields:
    """What is hashed of a record; ``data`` is already masked."""

    chain: str
    seq: int
    event_id: str
    type: str
    occurred_at: str
    recorded_at: str
    actor: dict[str, Any]
    resource: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class StoredRecord:
    fields: ChainedFields
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class StoredCheckpoint:
    id: int
    heads: dict[str, tuple[int, str]]
    pruned: dict[str, tuple[int, str]]
    prev_hash: str
    hash: str
    sealed_at: str


@dataclass(frozen=True)
class Problem:
    """The first thing that does not verify; ``chain``/``seq`` name the record (None for a
    problem with the checkpoints themselves, whose id is in ``detail``)."""

    chain: str | None
    seq: int | None
    kind: ProblemKind
    detail: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    chains: int
    checkpoints: int
    first_problem: Problem | None


# RFC 8785 numbers are IEEE doubles: integers beyond this lose precision, so `rfc8785` refuses them.
_SAFE_INTEGER = 2**53 - 1
# Below the surrogates, code point order (orjson's key sort) equals RFC 8785's UTF-16 order.
_ORDER_SAFE_KEY_LIMIT = "\ud800"


def _fast_path_safe(value: object) -> bool:
    """True when orjson's compact sorted output is byte-for-byte RFC 8785 for this value:
    only str / bool / None / safe int / list / dict with keys below U+D800. Floats (whose
    formatting differs), subclasses and anything else go to the reference `rfc8785` encoder."""
    if value is None or type(value) is str or type(value) is bool:
        return True
    if type(value) is int:
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    if type(value) is dict:
        return all(
            type(key) is str
            and (not key or max(key) < _ORDER_SAFE_KEY_LIMIT)
            and _fast_path_safe(item)
            for key, item in value.items()
        )
    if type(value) is list:
        return all(_fast_path_safe(item) for item in value)
    return False


def canonical(fields: ChainedFields) -> bytes:
    """RFC 8785 (JCS) bytes of the record's fields: the same bytes on every platform.

    orjson writes them about five times faster than the pure-Python reference encoder for the
    JSON that events carry; tests compare both on generated values."""
    value = {
        "actor": fields.actor,
        "chain": fields.chain,
        "data": fields.data,
        "event_id": fields.event_id,
        "occurred_at": fields.occurred_at,
        "recorded_at": fields.recorded_at,
        "resource": fields.resource,
        "seq": fields.seq,
        "type": fields.type,
    }
    if _fast_path_safe(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # e.g. a lone surrogate; let the reference encoder decide
            pass
    return rfc8785.dumps(value)


def record_hash(fields: ChainedFields, prev_hash: str) -> str:
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical(fields))
    return digest.hexdigest()


def checkpoint_hash(
    heads: Mapping[str, tuple[int, str]],
    prev_checkpoint_hash: str,
    pruned: Mapping[str, tuple[int, str]] | None,
    sealed_at: str,
) -> str:
    """Hash of a checkpoint; ``pruned=None`` and ``{}`` hash the same."""
    body: dict[str, Any] = {
        "heads": {chain: [seq, head] for chain, (seq, head) in heads.items()},
        "pruned": {chain: [seq, last] for chain, (seq, last) in (pruned or {}).items()},
        "sealed_at": sealed_at,
    }
    digest = hashlib.sha256(prev_checkpoint_hash.encode("ascii"))
    digest.update(rfc8785.dumps(body))
    return digest.hexdigest()


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str
    checkpoint_id: int


def _verify_checkpoints(checkpoints: Sequence[StoredCheckpoint]) -> Problem | None:
    prev_hash = GENESIS
    prev_id: int | None = None
    for checkpoint in checkpoints:
        where = f"checkpoint {checkpoint.id}"
        if prev_id is not None and checkpoint.id <= prev_id:
            return Problem(None, None, "checkpoint_changed", f"{where} is out of order")
        expected = checkpoint_hash(
            checkpoint.heads, checkpoint.prev_hash, checkpoint.pruned, checkpoint.sealed_at
        )
        if expected != checkpoint.hash:
            return Problem(
                None, None, "checkpoint_changed", f"{where}: stored hash does not match content"
            )
        if checkpoint.prev_hash != prev_hash:
            return Problem(
                None,
                None,
                "checkpoint_changed",
                f"{where} does not link to the previous checkpoint"
                " (a checkpoint was deleted, inserted or re-hashed)",
            )
        prev_hash, prev_id = checkpoint.hash, checkpoint.id
    return None


def _index_checkpoints(
    checkpoints: Sequence[StoredCheckpoint],
) -> tuple[dict[str, list[_Head]], dict[str, _Head]]:
    """Heads per chain (sorted by seq) and the furthest prune point per chain."""
    heads: dict[str, list[_Head]] = {}
    pruned: dict[str, _Head] = {}
    for checkpoint in checkpoints:
        for chain, (seq, head) in checkpoint.heads.items():
            heads.setdefault(chain, []).append(_Head(seq, head, checkpoint.id))
        for chain, (seq, last) in checkpoint.pruned.items():
            if chain not in pruned or seq > pruned[chain].seq:
                pruned[chain] = _Head(seq, last, checkpoint.id)
    for chain_heads in heads.values():
        chain_heads.sort(key=lambda head: (head.seq, head.checkpoint_id))
    return heads, pruned


class _ChainVerifier:
    """Walks one chain in seq order holding only the last two links (O(1) memory)."""

    def __init__(
        self, chain: str, records: Iterable[StoredRecord], heads: list[_Head], pruned: _Head | None
    ) -> None:
        self.chain = chain
        self.records: Iterator[StoredRecord] = iter(records)
        self.count = 0
        self.pruned = pruned
        self.start = pruned.seq if pruned else 0  # seq of the anchor the chain hangs from
        self.heads = [head for head in heads if head.seq >= self.start]
        self.head_index = 0
        self.prev_seq = self.start
        self.prev_hash = pruned.hash if pruned else GENESIS
        self.prev_prev_hash: str | None = None
        self.prev_event_id: str | None = None

    def _next(self) -> StoredRecord | None:
        record = next(self.records, None)
        if record is not None:
            self.count += 1
        return record

    def _problem(self, seq: int, kind: ProblemKind, detail: str) -> Problem:
        return Problem(self.chain, seq, kind, detail)

    def run(self) -> Problem | None:
        # A head (or prune point) at the anchor itself must agree with the anchor.
        problem = self._check_heads_at(self.start, self.prev_hash)
        if problem:
            return problem
        while (record := self._next()) is not None:
            if record.fields.seq <= self.start and self.pruned is not None:
                # Past retention but not yet deleted: the checkpoint vouches for what follows.
                if record.fields.seq == self.start and record.hash != self.pruned.hash:
                    return self._problem(
                        record.fields.seq,
                        "checkpoint_mismatch",
                        f"checkpoint {self.pruned.checkpoint_id} recorded a different hash "
                        "for the last pruned record",
                    )
                continue
            problem = self._check(record)
            if problem:
                return problem
            self.prev_prev_hash, self.prev_hash = self.prev_hash, record.hash
            self.prev_seq, self.prev_event_id = record.fields.seq, record.fields.event_id
        return self._check_truncation()

    def _check_heads_at(self, seq: int, actual_hash: str) -> Problem | None:
        while self.head_index < len(self.heads) and self.heads[self.head_index].seq <= seq:
            head = self.heads[self.head_index]
            self.head_index += 1
            if head.hash != actual_hash:
                return self._problem(
                    seq,
                    "checkpoint_mismatch",
                    f"checkpoint {head.checkpoint_id} sealed seq {seq} with a different hash: "
                    "the chain was rewritten at or before this record",
                )
        return None

    def _check_truncation(self) -> Problem | None:
        if self.head_index < len(self.heads):
            head = self.heads[-1]
            return self._problem(
                self.prev_seq + 1,
                "checkpoint_mismatch",
                f"chain ends at seq {self.prev_seq} but checkpoint {head.checkpoint_id} "
                f"sealed it at seq {head.seq}: records {self.prev_seq + 1}..{head.seq} "
                "were deleted",
            )
        return None

    def _check(self, record: StoredRecord) -> Problem | None:
        fields = record.fields
        seq = fields.seq
        if fields.chain != self.chain:
            return self._problem(seq, "changed", f"record claims chain {fields.chain!r}")
        if seq == self.prev_seq:
            return self._problem(
                seq,
                "inserted",
                f"two records claim seq {seq} (event ids {self.prev_event_id}, {fields.event_id})",
            )
        if seq < self.prev_seq:
            return self._problem(seq, "reordered", f"seq {seq} appears after {self.prev_seq}")
        try:
            self_consistent = record_hash(fields, record.prev_hash) == record.hash
        except (rfc8785.CanonicalizationError, UnicodeEncodeError) as error:
            # Nothing we write fails to canonicalize, so the stored content was edited.
            return self._problem(seq, "changed", f"content cannot be canonicalized: {error}")
        links = record.prev_hash == self.prev_hash
        if self_consistent and links:
            if seq != self.prev_seq + 1:  # only possible if someone forged a whole suffix
                return self._problem(self.prev_seq + 1, "deleted", "seq gap with intact links")
            return self._check_heads_at(seq, record.hash)
        if self.prev_prev_hash is not None and record.prev_hash == self.prev_prev_hash:
            return self._problem(
                self.prev_seq,
                "inserted",
                f"the record at seq {self.prev_seq} does not belong: the chain continues "
                "from its predecessor",
            )
        if self_consistent:
            return self._classify_unlinked(record)
        return self._classify_bad_hash(record, links)

    def _classify_unlinked(self, record: StoredRecord) -> Problem:
        """Genuine-looking record (valid hash for its content) that doesn't follow on."""
        seq = record.fields.seq
        if seq > self.prev_seq + 1:
            missing = f"{self.prev_seq + 1}" + (f"..{seq - 1}" if seq > self.prev_seq + 2 else "")
            return self._problem(self.prev_seq + 1, "deleted", f"missing seq {missing}")
        following = self._next()
        if following is not None and following.prev_hash == record.hash and self.prev_event_id:
            # The chain carries on from this record, so its predecessor is the odd one out.
            return self._problem(
                self.prev_seq,
                "changed",
                "record was rewritten and re-hashed: its successor was chained to a different hash",
            )
        if following is None:
            return self._problem(
                seq,
                "broken_link",
                f"last record does not link to seq {self.prev_seq}: either it was forged or "
                f"seq {self.prev_seq} was rewritten and re-hashed",
            )
        return self._problem(
            seq, "inserted", "forged record: hash valid for its content, but links to nothing"
        )

    def _classify_bad_hash(self, record: StoredRecord, links: bool) -> Problem:
        seq = record.fields.seq
        if links:
            return self._problem(seq, "changed", "stored hash does not match content")
        # A record moved here (its seq changed) is valid under the seq it came from, which some
        # later record now holds; scanning the rest of the chain costs time only on failure.
        while (later := self._next()) is not None:
            moved = dataclasses.replace(record.fields, seq=later.fields.seq)
            if record_hash(moved, record.prev_hash) == record.hash:
                return self._problem(
                    seq,
                    "reordered",
                    f"record {record.fields.event_id} was written as seq {later.fields.seq}",
                )
        if seq > self.prev_seq + 1:
            return self._problem(self.prev_seq + 1, "deleted", f"missing seq {self.prev_seq + 1}")
        return self._problem(
            seq, "changed", "stored hash matches neither its content nor its predecessor"
        )


def verify(
    records_by_chain: Mapping[str, Iterable[StoredRecord]],
    checkpoints: Sequence[StoredCheckpoint],
) -> Verification:
    """Verify every chain (each iterable ordered by seq) against the checkpoints (by id).

    Streams each chain with constant memory. The first problem is a problem with the
    checkpoints themselves, else the first bad record of the first bad chain in name order;
    verification stops there, so ``records``/``chains`` count what was read until then.
    """
    problem = _verify_checkpoints(checkpoints)
    if problem:
        return Verification(False, 0, 0, len(checkpoints), problem)
    heads, pruned = _index_checkpoints(checkpoints)
    records = chains = 0
    for chain in sorted(set(records_by_chain) | set(heads) | set(pruned)):
        verifier = _ChainVerifier(
            chain, records_by_chain.get(chain, ()), heads.get(chain, []), pruned.get(chain)
        )
        problem = verifier.run()
        records += verifier.count
        chains += 1
        if problem:
            return Verification(False, records, chains, len(checkpoints), problem)
    return Verification(True, records, chains, len(checkpoints), None)


async def verify_streams(
    records_by_chain: Mapping[str, AsyncIterable[StoredRecord]],
    checkpoints: Sequence[StoredCheckpoint],
    batch: int = 1000,
) -> Verification:
    """`verify` over async streams (database cursors) without loading them: hashing runs in a
    worker thread, which pulls ``batch`` records at a time from the event loop, so memory
    stays bounded and the loop keeps serving requests meanwhile."""
    loop = asyncio.get_running_loop()

    async def take(iterator: AsyncIterator[StoredRecord]) -> list[StoredRecord]:
        chunk: list[StoredRecord] = []
        with contextlib.suppress(StopAsyncIteration):
            while len(chunk) < batch:
                chunk.append(await anext(iterator))
        return chunk

    def pull(iterator: AsyncIterator[StoredRecord]) -> Iterator[StoredRecord]:
        while chunk := asyncio.run_coroutine_threadsafe(take(iterator), loop).result():
            yield from chunk
            if len(chunk) < batch:
                return

    iterators = {chain: aiter(stream) for chain, stream in records_by_chain.items()}
    try:
        streams = {chain: pull(iterator) for chain, iterator in iterators.items()}
        return await asyncio.to_thread(verify, streams, checkpoints)
    finally:
        for iterator in iterators.values():
            close = getattr(iterator, "aclose", None)
            if close is not None:  # verify may stop early: release the cursor now
                await close()
