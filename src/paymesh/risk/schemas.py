"""Risk's API documents: evaluations and decisions, simulations, rule sets, backtests,
review cases, sanctions screenings and lists."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from paymesh.kernel.money import AmountMinor, CurrencyCode
from paymesh.risk.rules import (
    Decision,
    Facts,
    Level,
    RuleSetDefinition,
    TransactionType,
)

STRICT_INPUT = ConfigDict(extra="forbid", strict=True)
T = TypeVar("T")

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-:.]{1,128}$")]
UserId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
CountryCode = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{2}$"), Field(description="ISO 3166-1 alpha-2")
]
PartyName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
MetadataValue = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00]*$")]
MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-.]{1,64}$")]
EntityType = Literal["individual", "entity"]


class Counterparty(BaseModel):
    model_config = STRICT_INPUT

    name: PartyName
    country: CountryCode | None = None
    account: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 \-/]{1,64}$")] | None = None
    type: EntityType = "individual"


class EvaluationCreate(BaseModel):
    """A transaction about to move money. Risk gathers the facts itself."""

    model_config = STRICT_INPUT

    transaction_id: Identifier = Field(description="The payment's id: one velocity entry each.")
    customer_id: UserId = Field(description="The identity user paying.")
    type: TransactionType
    amount: AmountMinor = Field(description="Minor units of `currency`, paid by the customer.")
    currency: CurrencyCode
    counterparty: Counterparty | None = None
    channel: Channel | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = Field(default=None, max_length=20)


class SimulationCreate(BaseModel):
    """An evaluation with the caller's facts in place of gathered ones: nothing is stored."""

    model_config = ConfigDict(extra="forbid")

    transaction: EvaluationCreate
    facts: Facts
    ruleset_version: int | None = Field(
        default=None, ge=1, description="A stored version to try (default: the active one)."
    )


class ReasonOut(BaseModel):
    rule: str
    points: int
    detail: str


class DecisionOut(BaseModel):
    """The answer: what to do with the transaction, and why."""

    decision_id: str | None = Field(description="null for a simulation (nothing stored).")
    transaction_id: str
    score: int
    level: Level
    decision: Decision = Field(
        description="allow; step_up (ask the customer for a one-time code); review (hold "
        "for a compliance officer: a case is open); block."
    )
    reasons: list[ReasonOut]
    ruleset_version: int
    created_at: dt.datetime


class ScreeningMatchOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    list_name: str = Field(alias="list", description="UN, OFAC-SDN, ...")
    entry_id: str
    matched_name: str
    score: float
    reasons: list[str]


class DecisionDetail(DecisionOut):
    """A stored decision with everything it was made from."""

    customer_id: str
    request: dict[str, Any] = Field(description="The evaluation's input, as sent.")
    facts: dict[str, Any] = Field(description="The facts the rules saw.")
    screening: list[ScreeningMatchOut]


class RuleSetOut(BaseModel):
    version: int
    description: str
    definition: RuleSetDefinition
    active: bool
    created_at: dt.datetime
    created_by: str


class ActivationOut(BaseModel):
    version: int
    previous_version: int | None
    activated_at: dt.datetime
    activated_by: str
    reason: str


class BacktestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: dt.datetime | None = Field(default=None, description="Replay decisions from here.")
    limit: int = Field(default=1000, ge=1, le=10_000, description="Newest decisions replayed.")


class DecisionChange(BaseModel):
    decision_id: str
    transaction_id: str
    before: dict[str, Any] = Field(description="decision, level, score as recorded")
    after: dict[str, Any] = Field(description="decision, level, score under the candidate")


class BacktestOut(BaseModel):
    version: int
    replayed: int
    changed: int
    changes: list[DecisionChange] = Field(description="The first 100 changed decisions.")


class CaseOut(BaseModel):
    id: str
    decision_id: str
    transaction_id: str
    customer_id: str
    status: Literal["open", "approved", "declined"]
    reasons: list[ReasonOut]
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by: str | None
    note: str | None


class CaseResolution(BaseModel):
    model_config = STRICT_INPUT

    note: Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")] | None = None


class ScreeningCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PartyName
    type: EntityType | None = None
    country: CountryCode | None = None
    date_of_birth: dt.date | None = None


class ListVersionOut(BaseModel):
    id: int
    list_name: str
    published: str
    source_format: str
    sha256: str
    entry_count: int
    loaded_at: dt.datetime
    loaded_by: str


class ScreeningOut(BaseModel):
    hit: bool
    matches: list[ScreeningMatchOut]
    threshold: float
    lists: list[ListVersionOut] = Field(description="The list versions screened against.")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None
