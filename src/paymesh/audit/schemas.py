"""Audit's API documents."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from paymesh.audit.chain import Verification
from paymesh.audit.models import AuditRecord

T = TypeVar("T")


class Record(BaseModel):
    id: str
    chain: str = Field(description="The source service: one hash chain each.")
    seq: int = Field(description="Position in the chain, from 1.")
    event_id: str
    type: str
    resource: str | None = Field(description="The event's subject: what changed.")
    actor: dict[str, Any] = Field(
        description="Who acted and where: subject, client_id, roles, request_id, traceparent."
    )
    data: dict[str, Any] = Field(description="The event's data, masked before it was stored.")
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, row: AuditRecord) -> Record:
        return cls.model_validate(row, from_attributes=True)


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


class DailyCount(BaseModel):
    day: str = Field(description="UTC date, YYYY-MM-DD.")
    type: str
    count: int


class ProblemOut(BaseModel):
    chain: str | None
    seq: int | None
    kind: Literal[
        "changed",
        "deleted",
        "inserted",
        "reordered",
        "broken_link",
        "checkpoint_mismatch",
        "checkpoint_changed",
    ]
    detail: str


class VerificationOut(BaseModel):
    ok: bool
    records: int
    chains: int
    checkpoints: int
    first_problem: ProblemOut | None

    @classmethod
    def of(cls, result: Verification) -> VerificationOut:
        problem = result.first_problem
        return cls(
            ok=result.ok,
            records=result.records,
            chains=result.chains,
            checkpoints=result.checkpoints,
            first_problem=(
                ProblemOut(
                    chain=problem.chain, seq=problem.seq, kind=problem.kind, detail=problem.detail
                )
                if problem is not None
                else None
            ),
        )
