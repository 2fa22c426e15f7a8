"""Risk HTTP API under /v1/risk.

Evaluations are for services (payments asks before money moves); simulations, rule sets
and backtests for `ops` and `admin` (only `admin` writes rule sets); the review queue for
`ops` and `compliance`; screenings for services, `ops` and `compliance`. Customers reach
none of it: a customer who could probe the rules or the lists could learn to slip past.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Path, Query

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.errors import IdempotencyKeyReused, problem_responses
from paymesh.kernel.pagination import InvalidCursor
from paymesh.kernel.routing import SessionDep, state_dependency
from paymesh.risk import errors
from paymesh.risk.cases import Cases, CaseStatus
from paymesh.risk.rules import RuleSetDefinition
from paymesh.risk.rulesets import RuleSets
from paymesh.risk.sanctions import Screening, all_versions, match_view
from paymesh.risk.schemas import (
    ActivationOut,
    BacktestCreate,
    BacktestOut,
    CaseOut,
    CaseResolution,
    DecisionDetail,
    DecisionOut,
    EvaluationCreate,
    ListVersionOut,
    Page,
    RuleSetOut,
    ScreeningCreate,
    ScreeningOut,
    SimulationCreate,
)
from paymesh.risk.service import Evaluations

router = service_router(prefix="/v1/risk", tags=["risk"])

EVALUATOR_ROLES = frozenset({"service"})
Evaluator = Annotated[Caller, Depends(require(roles=EVALUATOR_ROLES))]
Reader = Annotated[Caller, Depends(require(roles={"service", "ops", "compliance", "admin"}))]
RuleReader = Annotated[Caller, Depends(require(roles={"ops", "compliance", "admin"}))]
Simulator = Annotated[Caller, Depends(require(roles={"ops", "admin"}))]
RuleWriter = Annotated[Caller, Depends(require(roles={"admin"}))]
Reviewer = Annotated[Caller, Depends(require(roles={"ops", "compliance"}))]
Screener = Annotated[Caller, Depends(require(roles={"service", "ops", "compliance"}))]

ID_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
DecisionId = Annotated[str, Path(pattern=ID_PATTERN)]
CaseId = Annotated[str, Path(pattern=ID_PATTERN)]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=512, description="From `next_cursor`.")]


EvaluationsDep = Annotated[Evaluations, Depends(state_dependency("evaluations", Evaluations))]
RuleSetsDep = Annotated[RuleSets, Depends(state_dependency("rulesets", RuleSets))]
CasesDep = Annotated[Cases, Depends(state_dependency("cases", Cases))]
ScreeningDep = Annotated[Screening, Depends(state_dependency("screening", Screening))]


@router.post(
    "/evaluate",
    response_model=DecisionOut,
    responses=problem_responses(
        errors.CustomerNotFound,
        errors.CurrencyNotConvertible,
        errors.FactsUnavailable,
        errors.NoSanctionsList,
        IdempotencyKeyReused,
    ),
)
async def evaluate(
    body: EvaluationCreate, session: SessionDep, service: EvaluationsDep, caller: Evaluator
) -> DecisionOut:
    """Decide on a transaction before money moves: `allow`, `step_up` (ask the customer
    for a one-time code), `review` (a compliance officer decides; a case is open) or
    `block`, with the score, its level and every rule that contributed. Risk gathers the
    facts itself (KYC and limits from profiles, the USD amount from forex, the customer's
    last 24 h, sanctions screening of the counterparty and the customer); the decision is
    stored with them. Send `Idempotency-Key` to make a retry return the same decision."""
    return await service.evaluate(session, caller, body)


@router.post(
    "/simulate",
    response_model=DecisionOut,
    responses=problem_responses(errors.RuleSetNotFound),
)
async def simulate(
    body: SimulationCreate,
    session: SessionDep,
    service: EvaluationsDep,
    sets: RuleSetsDep,
    _caller: Simulator,
) -> DecisionOut:
    """The same evaluation with your facts in place of gathered ones, through the active
    rule set or `ruleset_version`: nothing is stored, no velocity is counted."""
    if body.ruleset_version is None:
        ruleset = await sets.active(session)
    else:
        ruleset = await sets.version(session, body.ruleset_version)
    return service.simulate(ruleset, body.transaction, body.facts)


@router.get(
    "/decisions/{decision_id}",
    response_model=DecisionDetail,
    responses=problem_responses(errors.DecisionNotFound),
)
async def get_decision(
    decision_id: DecisionId, session: SessionDep, service: EvaluationsDep, _caller: Reader
) -> DecisionDetail:
    """A stored decision with its input, the facts it saw and the screening matches."""
    return await service.get(session, decision_id)


@router.get("/rulesets", response_model=list[RuleSetOut])
async def list_rulesets(
    session: SessionDep, sets: RuleSetsDep, _caller: RuleReader
) -> list[RuleSetOut]:
    """Every rule set version, newest first; `active` marks the one in force."""
    return await sets.listing(session)


@router.post(
    "/rulesets",
    status_code=201,
    response_model=RuleSetOut,
    responses=problem_responses(errors.InvalidRuleSet, errors.RuleSetConflict),
)
async def create_ruleset(
    body: RuleSetDefinition, session: SessionDep, sets: RuleSetsDep, caller: RuleWriter
) -> RuleSetOut:
    """Store a new version (not yet active). Every condition is compiled and run on the
    known facts first: an unknown fact, a syntax error or a non-boolean answer is 422."""
    return await sets.create(session, caller, body)


@router.get(
    "/rulesets/{version}",
    response_model=RuleSetOut,
    responses=problem_responses(errors.RuleSetNotFound),
)
async def get_ruleset(
    version: Version, session: SessionDep, sets: RuleSetsDep, _caller: RuleReader
) -> RuleSetOut:
    """One rule set version."""
    return await sets.get(session, version)


@router.post(
    "/rulesets/{version}/activate",
    response_model=ActivationOut,
    responses=problem_responses(errors.RuleSetNotFound, errors.RuleSetAlreadyActive),
)
async def activate_ruleset(
    version: Version, session: SessionDep, sets: RuleSetsDep, caller: RuleWriter
) -> ActivationOut:
    """Make `version` the rule set every following evaluation uses (event
    `risk.ruleset.activated`)."""
    return await sets.activate(session, caller, version)


@router.post(
    "/rulesets/rollback",
    response_model=ActivationOut,
    responses=problem_responses(errors.NothingToRollBack),
)
async def roll_back_ruleset(
    session: SessionDep, sets: RuleSetsDep, caller: RuleWriter
) -> ActivationOut:
    """Return to the version active before the current one (event
    `risk.ruleset.activated` with reason `rollback`)."""
    return await sets.roll_back(session, caller)


@router.post(
    "/rulesets/{version}/backtest",
    response_model=BacktestOut,
    responses=problem_responses(errors.RuleSetNotFound),
)
async def backtest_ruleset(
    version: Version,
    body: BacktestCreate,
    session: SessionDep,
    sets: RuleSetsDep,
    _caller: Simulator,
) -> BacktestOut:
    """Replay the newest stored decisions' facts (up to `limit`, from `since`) through
    `version`: how many decisions would change, and the first hundred that would."""
    return await sets.backtest(session, version, body.since, body.limit)


@router.get("/cases", response_model=Page[CaseOut], responses=problem_responses(InvalidCursor))
async def list_cases(
    session: SessionDep,
    service: CasesDep,
    _caller: Reviewer,
    status: Annotated[CaseStatus | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[CaseOut]:
    """The review queue, oldest first (`status=open` for what waits)."""
    return await service.listing(session, status, limit, cursor)


@router.get(
    "/cases/{case_id}", response_model=CaseOut, responses=problem_responses(errors.CaseNotFound)
)
async def get_case(
    case_id: CaseId, session: SessionDep, service: CasesDep, _caller: Reviewer
) -> CaseOut:
    """One case."""
    return await service.get(session, case_id)


RESOLUTION_ERRORS = problem_responses(errors.CaseNotFound, errors.CaseAlreadyResolved)


@router.post("/cases/{case_id}/approve", response_model=CaseOut, responses=RESOLUTION_ERRORS)
async def approve_case(
    case_id: CaseId,
    session: SessionDep,
    service: CasesDep,
    caller: Reviewer,
    body: CaseResolution | None = None,
) -> CaseOut:
    """Let the held transaction go ahead (event `risk.case.approved`)."""
    return await _resolve(session, service, caller, case_id, "approved", body)


@router.post("/cases/{case_id}/decline", response_model=CaseOut, responses=RESOLUTION_ERRORS)
async def decline_case(
    case_id: CaseId,
    session: SessionDep,
    service: CasesDep,
    caller: Reviewer,
    body: CaseResolution | None = None,
) -> CaseOut:
    """Refuse the held transaction (event `risk.case.declined`)."""
    return await _resolve(session, service, caller, case_id, "declined", body)


async def _resolve(
    session: SessionDep,
    service: Cases,
    caller: Caller,
    case_id: str,
    outcome: Literal["approved", "declined"],
    body: CaseResolution | None,
) -> CaseOut:
    note = body.note if body is not None else None
    return await service.resolve(session, caller, case_id, outcome, note)


@router.post(
    "/screenings",
    response_model=ScreeningOut,
    responses=problem_responses(errors.NoSanctionsList),
)
async def screen(body: ScreeningCreate, lists: ScreeningDep, _caller: Screener) -> ScreeningOut:
    """Screen a name against the loaded sanctions lists: normalised (case, accents,
    scripts, punctuation, word order, particles), compared by spelling and sound; country
    and date of birth raise or lower a match's score. `hit` when any match reaches the
    threshold (`PAYMESH_RISK_SCREENING_THRESHOLD`). Nothing is stored."""
    matches, loaded = lists.screen(
        body.name, type=body.type, country=body.country, date_of_birth=body.date_of_birth
    )
    return ScreeningOut(
        hit=bool(matches),
        matches=[match_view(match) for match in matches],
        threshold=lists.threshold,
        lists=list(loaded.versions) if loaded else [],
    )


@router.get("/sanctions-lists", response_model=list[ListVersionOut])
async def list_sanctions_lists(session: SessionDep, _caller: Screener) -> list[ListVersionOut]:
    """Loaded list versions, newest first (the newest of each list is screened against)."""
    rows = await all_versions(session)
    return [ListVersionOut.model_validate(row, from_attributes=True) for row in rows]
