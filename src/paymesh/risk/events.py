"""The events the risk service writes: review cases opened and resolved, and rule sets
created and activated."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from paymesh.kernel.event_catalog import EventData, EventType


class Reason(EventData):
    rule: str = Field(description="The rule that added points.")
    points: int
    detail: str


class CaseOpened(EventData):
    case_id: str
    decision_id: str
    transaction_id: str
    customer_id: str
    reasons: list[Reason] = Field(description="Why the decision was `review`.")


class CaseResolved(EventData):
    case_id: str
    decision_id: str
    transaction_id: str
    customer_id: str
    resolved_by: str = Field(description="The compliance officer's subject.")


class RuleSetCreated(EventData):
    version: int
    created_by: str = Field(description="The caller's subject.")


class RuleSetActivated(EventData):
    version: int
    previous_version: int | None = Field(
        description="The version active before it, or null when none was."
    )
    by: str = Field(description="The caller's subject (`paymesh` for the initial one).")
    reason: Literal["activate", "rollback", "initial"] = Field(
        description="`initial`: the default rule set, at first start; `rollback`: a return to "
        "the version active before the current one."
    )


EVENTS: tuple[EventType, ...] = (
    EventType(
        name="risk.case.opened",
        summary="An evaluation decided `review` and opened a case for a compliance officer.",
        data=CaseOpened,
    ),
    EventType(
        name="risk.case.approved",
        summary="A compliance officer approved an open case: the held payment may go on.",
        data=CaseResolved,
    ),
    EventType(
        name="risk.case.declined",
        summary="A compliance officer declined an open case: the held payment must not move.",
        data=CaseResolved,
    ),
    EventType(
        name="risk.ruleset.created",
        summary="A new rule set version was stored (not yet active).",
        data=RuleSetCreated,
    ),
    EventType(
        name="risk.ruleset.activated",
        summary="A rule set version became active: on first start, activation or rollback.",
        data=RuleSetActivated,
    ),
)
