"""Rule set versions: create, activate, roll back, backtest; the compiled active set.

Versions are immutable once written (a change is a new version). The newest row of the
activation log names the active version. Evaluations use the active set this process last
read, for up to `ACTIVE_SECONDS`: an activation or rollback committed by this process
applies to the next evaluation, one committed by another process within that second (each
decision stores the version it ran, so a decision is reproducible either way). Compiled
rule sets are cached per version: compiling happens once per version per process.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.auth import Caller
from paymesh.kernel.db import Database, mark_for_commit, utcnow
from paymesh.kernel.events import Outbox
from paymesh.risk import errors, repository
from paymesh.risk.models import RuleSet, RuleSetActivation
from paymesh.risk.rules import (
    DEFAULT_RULESET,
    CompiledRuleSet,
    Facts,
    RuleCompileError,
    RuleSetDefinition,
)
from paymesh.risk.schemas import ActivationOut, BacktestOut, DecisionChange, RuleSetOut

SYSTEM = "paymesh"
LISTED_CHANGES = 100
ACTIVE_SECONDS = 1.0
ACTIVATED = "risk.ruleset.activated"
"""The mark of a transaction that activates a version (`mark_for_commit`)."""


class RuleSets:
    def __init__(self, outbox: Outbox, database: Database) -> None:
        self.outbox = outbox
        self._compiled: dict[int, CompiledRuleSet] = {}
        self._active: tuple[float, CompiledRuleSet] | None = None
        self._activations = 0  # activations this process committed
        database.wake_on_commit(ACTIVATED, self._forget_active)

    def _forget_active(self) -> None:
        self._active = None
        self._activations += 1

    def compiled(self, version: int, definition: dict[str, Any]) -> CompiledRuleSet:
        found = self._compiled.get(version)
        if found is None:
            found = CompiledRuleSet(version, RuleSetDefinition.model_validate(definition))
            self._compiled[version] = found
        return found

    async def active(self, session: AsyncSession) -> CompiledRuleSet:
        held = self._active
        if held is not None and time.monotonic() - held[0] < ACTIVE_SECONDS:
            return held[1]
        activations = self._activations
        found = await self._read_active(session)
        if activations == self._activations:  # no activation committed while it was read
            self._active = (time.monotonic(), found)
        return found

    async def _read_active(self, session: AsyncSession) -> CompiledRuleSet:
        version = await repository.active_version(session)
        if version is None:
            raise RuntimeError("no rule set is active: the service did not start")
        cached = self._compiled.get(version)
        if cached is not None:
            return cached
        row = await repository.ruleset(session, version)
        assert row is not None  # the activation log only names stored versions
        return self.compiled(row.version, row.definition)

    async def version(self, session: AsyncSession, version: int) -> CompiledRuleSet:
        row = await repository.ruleset(session, version)
        if row is None:
            raise errors.RuleSetNotFound(detail=f"version {version}")
        return self.compiled(row.version, row.definition)

    async def install_default(self, database: Database) -> None:
        """Version 1 is the source designs' rule set, active from the first start. Two
        processes starting together: one insert wins, the other finds it."""
        async with database.transaction() as session:
            if await repository.active_activation(session) is not None:
                return
        try:
            async with database.transaction() as session:
                session.add(_row(1, DEFAULT_RULESET, SYSTEM))
                await session.flush()
                await self._activate(session, 1, None, SYSTEM, "initial")
        except IntegrityError:
            return

    async def create(
        self, session: AsyncSession, caller: Caller, definition: RuleSetDefinition
    ) -> RuleSetOut:
        try:
            CompiledRuleSet(0, definition)
        except RuleCompileError as error:
            raise errors.InvalidRuleSet(detail=str(error)) from None
        version = await repository.newest_version(session) + 1
        row = _row(version, definition, caller.subject)
        session.add(row)
        try:
            await session.flush()
        except IntegrityError:
            raise errors.RuleSetConflict(detail=f"version {version}") from None
        await self.outbox.add(
            session,
            "risk.ruleset.created",
            {"version": version, "created_by": caller.subject},
            subject=str(version),
        )
        return view(row, active=False)

    async def activate(self, session: AsyncSession, caller: Caller, version: int) -> ActivationOut:
        if await repository.ruleset(session, version) is None:
            raise errors.RuleSetNotFound(detail=f"version {version}")
        current = await repository.active_activation(session)
        if current is not None and current.version == version:
            raise errors.RuleSetAlreadyActive(detail=f"version {version}")
        previous = current.version if current else None
        return await self._activate(session, version, previous, caller.subject, "activate")

    async def roll_back(self, session: AsyncSession, caller: Caller) -> ActivationOut:
        """Return to the version that was active before the current one. Rollbacks walk
        back through history (C -> B -> A), never toggle: the new row's previous version
        is the one that preceded the version returned to."""
        current = await repository.active_activation(session)
        if current is None or current.previous_version is None:
            raise errors.NothingToRollBack()
        target = current.previous_version
        earlier = await repository.last_activation_of(session, target, before_id=current.id)
        before_target = earlier.previous_version if earlier is not None else None
        return await self._activate(session, target, before_target, caller.subject, "rollback")

    async def _activate(
        self, session: AsyncSession, version: int, previous: int | None, by: str, reason: str
    ) -> ActivationOut:
        activation = RuleSetActivation(
            version=version,
            previous_version=previous,
            activated_at=utcnow(),
            activated_by=by,
            reason=reason,
        )
        session.add(activation)
        await session.flush()
        mark_for_commit(session, ACTIVATED)
        await self.outbox.add(
            session,
            "risk.ruleset.activated",
            {"version": version, "previous_version": previous, "by": by, "reason": reason},
            subject=str(version),
        )
        return ActivationOut.model_validate(activation, from_attributes=True)

    async def listing(self, session: AsyncSession) -> list[RuleSetOut]:
        active = await repository.active_activation(session)
        active_version = active.version if active else None
        rows = await repository.rulesets(session)
        return [view(row, active=row.version == active_version) for row in rows]

    async def get(self, session: AsyncSession, version: int) -> RuleSetOut:
        row = await repository.ruleset(session, version)
        if row is None:
            raise errors.RuleSetNotFound(detail=f"version {version}")
        active = await repository.active_activation(session)
        return view(row, active=active is not None and active.version == version)

    async def backtest(
        self, session: AsyncSession, version: int, since: dt.datetime | None, limit: int
    ) -> BacktestOut:
        """Replay stored decisions' facts through `version`; report what would change."""
        candidate = await self.version(session, version)
        replayed = 0
        changes: list[DecisionChange] = []
        changed = 0
        for stored in await repository.decisions_to_replay(session, since, limit):
            replayed += 1
            outcome = candidate.evaluate(Facts.model_validate(stored.facts))
            before = {"decision": stored.decision, "level": stored.level, "score": stored.score}
            after = {"decision": outcome.decision, "level": outcome.level, "score": outcome.score}
            if before != after:
                changed += 1
                if len(changes) < LISTED_CHANGES:
                    changes.append(
                        DecisionChange(
                            decision_id=stored.id,
                            transaction_id=stored.transaction_id,
                            before=before,
                            after=after,
                        )
                    )
        return BacktestOut(version=version, replayed=replayed, changed=changed, changes=changes)


def _row(version: int, definition: RuleSetDefinition, by: str) -> RuleSet:
    return RuleSet(
        version=version,
        description=definition.description,
        definition=definition.model_dump(mode="json"),
        created_at=utcnow(),
        created_by=by,
    )


def view(row: RuleSet, *, active: bool) -> RuleSetOut:
    return RuleSetOut(
        version=row.version,
        description=row.description,
        definition=RuleSetDefinition.model_validate(row.definition),
        active=active,
        created_at=row.created_at,
        created_by=row.created_by,
    )
