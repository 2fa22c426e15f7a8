"""Sanctions lists in the database, and the in-memory index each process screens with.

Loading a list writes its version row and every entry in one transaction, so no reader
sees half a list. Each process holds one `ScreeningIndex` over the newest version of each
list; a watcher compares the newest version ids every few seconds and, when one changed
(a `paymesh risk load-list` elsewhere), builds the new index on a worker thread and swaps
it in with one assignment: a screening uses the old index or the new, never a mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import Database, utcnow
from paymesh.risk import errors
from paymesh.risk.models import SanctionsEntry, SanctionsListVersion
from paymesh.risk.schemas import ListVersionOut, ScreeningMatchOut
from paymesh.risk.screening import (
    ListedEntry,
    SanctionsList,
    ScreeningIndex,
    ScreeningMatch,
    load_ofac_csv,
    load_un_xml,
)

log = structlog.get_logger("paymesh.risk.sanctions")
ListFormat = Literal["un-xml", "ofac-csv"]
ENTRY_BATCH = 500


def parse_list(list_format: ListFormat, files: Sequence[bytes]) -> SanctionsList:
    """A list file (UN XML) or files (OFAC sdn.csv [alt.csv [add.csv]]) parsed."""
    if list_format == "un-xml":
        if len(files) != 1:
            raise ValueError("the UN format is one XML file")
        return load_un_xml(files[0])
    if not 1 <= len(files) <= 3:
        raise ValueError("the OFAC format is sdn.csv, then optionally alt.csv and add.csv")
    return load_ofac_csv(*files)


async def store_list(
    session: AsyncSession,
    sanctions: SanctionsList,
    list_format: ListFormat,
    files: Sequence[bytes],
    loaded_by: str,
) -> SanctionsListVersion:
    """Write a new version of the list with all its entries (the caller's transaction)."""
    digest = hashlib.sha256()
    for content in files:
        digest.update(hashlib.sha256(content).digest())
    version = SanctionsListVersion(
        list_name=sanctions.list_name,
        published=sanctions.published[:64],
        source_format=list_format,
        sha256=digest.hexdigest(),
        entry_count=len(sanctions.entries),
        loaded_at=utcnow(),
        loaded_by=loaded_by,
    )
    session.add(version)
    await session.flush()
    rows = [
        {"list_version_id": version.id, "entry_id": entry.entry_id, "entry": entry.to_json()}
        for entry in _unique(sanctions.entries)
    ]
    table = SanctionsEntry.__table__
    for start in range(0, len(rows), ENTRY_BATCH):
        await session.execute(table.insert(), rows[start : start + ENTRY_BATCH])  # type: ignore[attr-defined]
    return version


def _unique(entries: Sequence[ListedEntry]) -> list[ListedEntry]:
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry.entry_id not in seen:
            seen.add(entry.entry_id)
            unique.append(entry)
    return unique


async def newest_versions(session: AsyncSession) -> list[SanctionsListVersion]:
    """The newest version of each list name."""
    newest = (
        select(func.max(SanctionsListVersion.id))
        .group_by(SanctionsListVersion.list_name)
        .scalar_subquery()
    )
    query = (
        select(SanctionsListVersion)
        .where(SanctionsListVersion.id.in_(newest))
        .order_by(SanctionsListVersion.list_name)
    )
    return list((await session.scalars(query)).all())


async def all_versions(session: AsyncSession, limit: int = 100) -> list[SanctionsListVersion]:
    query = select(SanctionsListVersion).order_by(SanctionsListVersion.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


SCREENED_NAMES = 10_000
"""Screenings remembered per loaded index. Names repeat (a customer's own legal name on each
of their payments, a payee paid again), and the same name, type, country and date of birth
against the same lists always finds the same matches; a new list version is a new index,
so nothing remembered outlives the lists it was found in."""


@dataclass(frozen=True)
class LoadedLists:
    versions: tuple[ListVersionOut, ...]
    index: ScreeningIndex
    screened: Callable[..., tuple[ScreeningMatch, ...]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        def screen(
            name: str,
            type: Literal["individual", "entity"] | None,  # noqa: A002
            country: str | None,
            date_of_birth: dt.date | None,
            threshold: float,
        ) -> tuple[ScreeningMatch, ...]:
            found = self.index.screen(
                name, type=type, country=country, date_of_birth=date_of_birth, threshold=threshold
            )
            return tuple(found)

        object.__setattr__(self, "screened", functools.lru_cache(maxsize=SCREENED_NAMES)(screen))


class Screening:
    """The process's current index, refreshed from the database."""

    def __init__(self, database: Database, *, threshold: float, required: bool) -> None:
        self.database = database
        self.threshold = threshold
        self.required = required
        self.loaded: LoadedLists | None = None
        self._refreshing = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None

    async def refresh(self) -> bool:
        """Load the newest list versions if they changed; True when the index was swapped."""
        async with self._refreshing:
            async with self.database.transaction(read_only=True) as session:
                versions = await newest_versions(session)
            ids = tuple(version.id for version in versions)
            current = tuple(version.id for version in self.loaded.versions) if self.loaded else ()
            if ids == current:
                return False
            async with self.database.transaction(read_only=True) as session:
                entries = await _entries_of(session, ids)
            index = await asyncio.to_thread(ScreeningIndex, entries)
            views = tuple(ListVersionOut.model_validate(v, from_attributes=True) for v in versions)
            self.loaded = LoadedLists(views, index)
            log.info("sanctions_lists_loaded", versions=ids, names=index.size)
            return True

    def screen(
        self,
        name: str,
        *,
        type: Literal["individual", "entity"] | None = None,  # noqa: A002
        country: str | None = None,
        date_of_birth: dt.date | None = None,
    ) -> tuple[list[ScreeningMatch], LoadedLists | None]:
        loaded = self.loaded
        if loaded is None:
            if self.required:
                raise errors.NoSanctionsList()
            return [], None
        matches = loaded.screened(name, type, country, date_of_birth, self.threshold)
        return list(matches), loaded

    def watch(self, interval_seconds: float) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_seconds)
                try:
                    await self.refresh()
                except Exception as error:
                    log.warning("sanctions_refresh_failed", error=repr(error))

        self._watcher = asyncio.create_task(loop(), name="risk-sanctions-watch")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None


async def _entries_of(session: AsyncSession, version_ids: Sequence[int]) -> list[ListedEntry]:
    if not version_ids:
        return []
    query = select(SanctionsEntry.entry).where(SanctionsEntry.list_version_id.in_(version_ids))
    return [ListedEntry.from_json(row) for row in (await session.scalars(query)).all()]


def match_view(match: ScreeningMatch) -> ScreeningMatchOut:
    return ScreeningMatchOut(
        list_name=match.list_name,
        entry_id=match.entry_id,
        matched_name=match.matched_name,
        score=match.score,
        reasons=list(match.reasons),
    )
