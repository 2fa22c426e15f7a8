"""The trail: append a masked record to its source's hash chain, seal checkpoints over
every chain's head, prune past retention, verify.

One chain per source service, so appends from different services never wait for each
other; appends to one chain are serialised (a PostgreSQL advisory lock per chain, SQLite's
one writer line) because each record names its predecessor's hash. A checkpoint hashes
every chain's (seq, hash) head with the previous checkpoint's hash: it is what catches the
deletion of a chain's newest records, which links alone cannot.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.audit.chain import (
    GENESIS,
    ChainedFields,
    StoredCheckpoint,
    StoredRecord,
    Verification,
    checkpoint_hash,
    record_hash,
    verify_streams,
)
from paymesh.audit.masking import DEFAULT_RULES, MaskingRules, mask
from paymesh.audit.models import AuditCheckpoint, AuditRecord
from paymesh.kernel.db import Database, lock_until_commit, utcnow
from paymesh.kernel.events import CloudEvent
from paymesh.kernel.ids import new_id
from paymesh.kernel.metrics import AUDIT_APPEND_LAG

_records = AuditRecord.__table__.c
CHAIN_HEAD = (
    select(_records.seq, _records.hash)
    .where(_records.chain == bindparam("chain"))
    .order_by(_records.seq.desc())
    .limit(1)
)
VERIFY_BATCH = 5000
RECORD_INSERT = insert(cast(Table, AuditRecord.__table__))


def instant(moment: dt.datetime) -> str:
    """A timestamp as hashed: UTC, microseconds, `Z` (stable across both databases)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


SAFE_INTEGER = 2**53 - 1


def hashable(value: Any) -> Any:
    """`value` with what canonical JSON (RFC 8785) cannot carry made text: integers beyond
    ±2^53 (amounts up to 2^63 exist), NaN and infinities. Recorded as sent otherwise."""
    if isinstance(value, dict):
        return {key: hashable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [hashable(item) for item in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > SAFE_INTEGER:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def chain_of(event: CloudEvent) -> str:
    """The source service: `/paymesh/<service>` → `<service>`; anything else as sent."""
    source = event.source
    if source.startswith("/paymesh/"):
        source = source.removeprefix("/paymesh/")
    return source[:64] or "unknown"


def actor_of(event: CloudEvent) -> dict[str, Any]:
    extra = event.model_extra or {}
    actor: dict[str, Any] = {}
    for name, key in (
        ("actor", "subject"),
        ("actorclient", "client_id"),
        ("requestid", "request_id"),
        ("traceparent", "traceparent"),
    ):
        value = extra.get(name)
        if isinstance(value, str) and value:
            actor[key] = value[:255]
    roles = extra.get("actorroles")
    if isinstance(roles, str) and roles:
        actor["roles"] = roles.split()[:20]
    return actor


def fields_of(row: Mapping[Any, Any]) -> ChainedFields:
    """What is hashed of a record (its row's columns, or the values about to be inserted)."""
    return ChainedFields(
        chain=row["chain"],
        seq=row["seq"],
        event_id=row["event_id"],
        type=row["type"],
        occurred_at=instant(row["occurred_at"]),
        recorded_at=instant(row["recorded_at"]),
        actor=row["actor"],
        resource=row["resource"],
        data=row["data"],
    )


def stored_instant(moment: dt.datetime) -> dt.datetime:
    """`moment` as the databases keep it (UTC, microseconds), so the hash is of what is kept."""
    return dt.datetime.fromisoformat(instant(moment))


class AuditTrail:
    def __init__(
        self, rules: MaskingRules = DEFAULT_RULES, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.rules = rules
        self.clock = clock

    async def append(self, session: AsyncSession, event: CloudEvent) -> None:
        """The event as the next record of its source's chain (masked first)."""
        chain = chain_of(event)
        seq, prev_hash = await self._lock_head(session, chain)
        await session.execute(RECORD_INSERT, self._record(event, chain, seq, prev_hash))
        self._observe_lag([event])

    def _observe_lag(self, events: Sequence[CloudEvent]) -> None:
        now = self.clock()
        for event in events:
            AUDIT_APPEND_LAG.observe(max(0.0, (now - event.time).total_seconds()))

    async def append_many(self, session: AsyncSession, events: Sequence[CloudEvent]) -> None:
        """`append` of each event in turn, in one go: one lock and one head read per chain
        touched (chains in name order, so two batches never wait on each other in a
        circle), then one insert of every row. The records are those `append` would write.

        The insert is one statement executed for many rows (asyncpg pipelines them in one
        round trip): measured twice as fast as a literal multi-row VALUES, which
        SQLAlchemy compiles anew for each batch size, and faster than its RETURNING
        "insertmanyvalues" pages."""
        if not events:
            return
        by_chain: dict[str, list[CloudEvent]] = {}
        for event in events:
            by_chain.setdefault(chain_of(event), []).append(event)
        rows: list[dict[str, Any]] = []
        for chain in sorted(by_chain):
            seq, prev_hash = await self._lock_head(session, chain)
            for event in by_chain[chain]:
                values = self._record(event, chain, seq, prev_hash)
                rows.append(values)
                seq, prev_hash = seq + 1, values["hash"]
        # One row goes as one parameter set: a list would take the executemany path.
        await session.execute(RECORD_INSERT, rows[0] if len(rows) == 1 else rows)
        self._observe_lag(events)

    async def _lock_head(self, session: AsyncSession, chain: str) -> tuple[int, str]:
        """Serialise appends to `chain` until commit; its next seq and the hash to link to."""
        await lock_until_commit(session, "audit-chain", chain)
        head = (await session.execute(CHAIN_HEAD, {"chain": chain})).first()
        return (head.seq + 1, head.hash) if head else (1, GENESIS)

    def _record(self, event: CloudEvent, chain: str, seq: int, prev_hash: str) -> dict[str, Any]:
        """The row for `event` at `seq` of `chain`, after `prev_hash`: masked and hashed."""
        actor = actor_of(event)
        values = {
            "id": new_id("aud"),
            "chain": chain,
            "seq": seq,
            "event_id": event.id[:128],
            "type": event.type[:128],
            "resource": event.subject[:255] if event.subject else None,
            "actor_subject": actor.get("subject"),
            "actor": actor,
            "data": hashable(mask(event.data, self.rules)),
            "occurred_at": stored_instant(event.time),
            "recorded_at": stored_instant(self.clock()),
            "prev_hash": prev_hash,
        }
        values["hash"] = record_hash(fields_of(values), prev_hash)
        return values

    async def seal(self, session: AsyncSession, pruned: dict[str, list[Any]] | None = None) -> int:
        """A checkpoint over every chain's head; returns its id. Seals are serialised (a
        PostgreSQL advisory lock; SQLite's one writer): the periodic job, a prune and an
        operator's seal may run at once, and each links to the one before."""
        await lock_until_commit(session, "audit-seal", "all")
        newest = select(_records.chain, func.max(_records.seq)).group_by(_records.chain)
        heads_query = select(_records.chain, _records.seq, _records.hash).where(
            tuple_(_records.chain, _records.seq).in_(newest)
        )
        heads: dict[str, tuple[int, str]] = {
            row.chain: (int(row.seq), str(row.hash))
            for row in (await session.execute(heads_query)).all()
        }
        previous = (
            await session.scalars(
                select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
            )
        ).first()
        carried: dict[str, tuple[int, str]] = {
            chain: (int(value[0]), str(value[1]))
            for chain, value in (previous.pruned if previous else {}).items()
        }
        for chain, value in (pruned or {}).items():
            carried[chain] = (int(value[0]), str(value[1]))
        if previous is not None and not pruned:
            sealed = {chain: (int(v[0]), str(v[1])) for chain, v in previous.heads.items()}
            if sealed == heads:
                return previous.id  # nothing appended since: an idle trail adds no seals
        prev_hash = previous.hash if previous else GENESIS
        sealed_at = dt.datetime.fromisoformat(instant(utcnow()))
        identifier = (previous.id + 1) if previous else 1
        digest = checkpoint_hash(heads, prev_hash, carried, instant(sealed_at))
        session.add(
            AuditCheckpoint(
                id=identifier,
                heads={chain: list(head) for chain, head in heads.items()},
                pruned={chain: list(head) for chain, head in carried.items()},
                sealed_at=sealed_at,
                prev_hash=prev_hash,
                hash=digest,
            )
        )
        await session.flush()
        return identifier

    async def checkpoint_digest(self, session: AsyncSession, identifier: int) -> str:
        checkpoint = await session.get(AuditCheckpoint, identifier)
        return checkpoint.hash if checkpoint is not None else ""

    async def prune(self, session: AsyncSession, before: dt.datetime) -> int:
        """Delete each chain's records that occurred before `before`, as a prefix of the
        chain (up to the first newer record), and seal a checkpoint naming what went."""
        pruned: dict[str, list[Any]] = {}
        removed = 0
        chains = (await session.scalars(select(_records.chain).distinct())).all()
        for chain in chains:
            first_kept = await session.scalar(
                select(func.min(_records.seq)).where(
                    _records.chain == chain, _records.occurred_at >= before
                )
            )
            last_seq = await session.scalar(
                select(func.max(_records.seq)).where(_records.chain == chain)
            )
            limit = (first_kept - 1) if first_kept is not None else last_seq
            if not limit:
                continue
            if first_kept is None:
                limit -= 1  # keep a chain's newest record: the next append links to it
            if limit < 1:
                continue
            last = (
                await session.execute(
                    select(_records.seq, _records.hash).where(
                        _records.chain == chain, _records.seq == limit
                    )
                )
            ).first()
            if last is None:
                continue
            pruned[chain] = [last.seq, last.hash]
            result: Any = await session.execute(
                delete(AuditRecord).where(AuditRecord.chain == chain, AuditRecord.seq <= limit)
            )
            removed += int(result.rowcount or 0)
        if pruned:
            await self.seal(session, pruned)
        return removed

    async def verify(self, database: Database) -> Verification:
        async with database.transaction(read_only=True) as session:
            chains = list((await session.scalars(select(_records.chain).distinct())).all())
            checkpoints = [
                StoredCheckpoint(
                    id=row.id,
                    heads={c: (int(v[0]), str(v[1])) for c, v in row.heads.items()},
                    pruned={c: (int(v[0]), str(v[1])) for c, v in row.pruned.items()},
                    prev_hash=row.prev_hash,
                    hash=row.hash,
                    sealed_at=instant(row.sealed_at),
                )
                for row in (
                    await session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id))
                ).all()
            ]
            streams = {chain: _stream(session, chain) for chain in chains}
            # Streamed in batches; the hashing runs on a worker thread.
            return await verify_streams(streams, checkpoints)


async def _stream(session: AsyncSession, chain: str) -> AsyncIterator[StoredRecord]:
    after = 0
    while True:
        rows = (
            await session.execute(
                select(AuditRecord.__table__)
                .where(_records.chain == chain, _records.seq > after)
                .order_by(_records.seq)
                .limit(VERIFY_BATCH)
            )
        ).all()
        for row in rows:
            yield StoredRecord(
                fields=fields_of(row._mapping), prev_hash=row.prev_hash, hash=row.hash
            )
        if len(rows) < VERIFY_BATCH:
            return
        after = rows[-1].seq
