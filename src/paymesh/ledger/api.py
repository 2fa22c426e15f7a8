"""Ledger HTTP API under /v1/ledger. Callers: service accounts (role `service` or scope
`ledger`) and the `admin` and `finance` roles (plus `auditor` for reads). Customers never
call the ledger directly; wallets and payments do."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request, Response
from pydantic import AfterValidator, AwareDatetime

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.errors import problem_responses
from paymesh.kernel.jsonutil import dumps
from paymesh.kernel.money import CurrencyCode
from paymesh.kernel.routing import SessionDep
from paymesh.ledger import errors
from paymesh.ledger.posting import Outcome
from paymesh.ledger.schemas import (
    Account,
    AccountCreate,
    Balance,
    Entry,
    Page,
    PendingPost,
    Transfer,
    TransferBatch,
    TransferBatchResult,
    TransferCreate,
    TrialBalance,
)
from paymesh.ledger.service import LedgerService

router = service_router(prefix="/v1/ledger", tags=["ledger"])

# Who may call the ledger; the fast path (fastpath.py) checks the same sets.
WRITER_ROLES = frozenset({"admin", "finance", "service"})
WRITER_SCOPES = frozenset({"ledger", "ledger:write"})
READER_ROLES = WRITER_ROLES | {"auditor"}
READER_SCOPES = frozenset({"ledger", "ledger:read"})

Writer = Annotated[Caller, Depends(require(roles=WRITER_ROLES, scopes=WRITER_SCOPES))]
Reader = Annotated[Caller, Depends(require(roles=READER_ROLES, scopes=READER_SCOPES))]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=512, description="From `next_cursor`.")]
AccountId = Annotated[str, Path(max_length=128)]
TransferId = Annotated[str, Path(max_length=128)]


def _in_utc(value: dt.datetime) -> dt.datetime:
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 has no UTC equivalent
        raise ValueError("the instant is outside the representable range") from None


Instant = Annotated[
    AwareDatetime,
    AfterValidator(_in_utc),
    Query(description="RFC 3339 instant, with offset."),
]


async def ledger(request: Request) -> LedgerService:
    service: LedgerService = request.app.state.runtime.state["ledger"]
    return service


Ledger = Annotated[LedgerService, Depends(ledger)]


def also(status: int, model: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entry for a second success status."""
    return {status: {"model": model, "description": description}}


def _transfer_response(outcome: Outcome, created_status: int) -> Response:
    """Serialise the state directly (its fields are `Transfer`'s): the hot path skips
    building and re-validating a response model."""
    return Response(
        dumps(outcome.transfer),
        status_code=created_status if outcome.created else 200,
        media_type="application/json",
    )


@router.post(
    "/accounts",
    status_code=201,
    response_model=Account,
    responses=also(200, Account, "Already existed with the same fields")
    | problem_responses(errors.ExistsWithDifferentFields, errors.FlagsAreMutuallyExclusive),
)
async def create_account(
    body: AccountCreate, session: SessionDep, service: Ledger, _caller: Writer, response: Response
) -> Account:
    """Open an account in one currency. Balances start at zero. Repeating the call with the
    same id and fields returns the account with 200; different fields give 409."""
    account, created = await service.create_account(session, body)
    response.status_code = 201 if created else 200
    return account


@router.get("/accounts", response_model=Page[Account])
async def list_accounts(
    session: SessionDep,
    service: Ledger,
    _caller: Reader,
    currency: Annotated[CurrencyCode | None, Query()] = None,
    code: Annotated[int | None, Query(ge=0, le=65535)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[Account]:
    """Accounts in creation order, optionally of one currency or code."""
    return await service.list_accounts(session, currency, code, limit, cursor)


@router.get(
    "/accounts/{account_id}",
    response_model=Account,
    responses=problem_responses(errors.AccountNotFound),
)
async def get_account(account_id: AccountId, service: Ledger, _caller: Reader) -> Account:
    """An account with its four balances (minor units)."""
    return await service.read_account(account_id)


@router.get(
    "/accounts/{account_id}/entries",
    response_model=Page[Entry],
    responses=problem_responses(errors.AccountNotFound, errors.InvalidCursor),
)
async def list_entries(
    account_id: AccountId,
    session: SessionDep,
    service: Ledger,
    _caller: Reader,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[Entry]:
    """The account's statement, oldest first: every change with the balances after it."""
    return await service.list_entries(session, account_id, limit, cursor)


@router.get(
    "/accounts/{account_id}/balance",
    response_model=Balance,
    responses=problem_responses(errors.AccountNotFound),
)
async def get_balance(
    account_id: AccountId,
    at: Instant,
    session: SessionDep,
    service: Ledger,
    _caller: Reader,
) -> Balance:
    """The four balances as they stood at `at`."""
    return await service.balance_at(session, account_id, at)


@router.post(
    "/transfers",
    status_code=201,
    response_model=Transfer,
    responses=also(200, Transfer, "Same id and fields: the original")
    | problem_responses(*errors.TRANSFER_ERRORS),
)
async def create_transfer(body: TransferCreate, service: Ledger, _caller: Writer) -> Response:
    """Move `amount` minor units from the debit account to the credit account, atomically
    with both balances and entries. With `pending: true` the amount is reserved until it is
    posted, voided, or expires after `timeout_seconds`. The `id` is the idempotency key:
    the same id and fields return the original transfer with 200 and no second effect."""
    return _transfer_response(await service.create_transfer(body), 201)


@router.post(
    "/transfers/batch",
    response_model=TransferBatchResult,
    responses=problem_responses(errors.BatchTooLarge),
)
async def create_transfer_batch(
    body: TransferBatch, service: Ledger, _caller: Writer
) -> TransferBatchResult:
    """Up to 8,000 transfers in request order. `atomic: true`: all apply or none do (the
    failing ones carry their code, the rest `linked_transfer_failed`). `atomic: false`:
    each stands alone. Results are in request order."""
    return await service.create_batch(body)


@router.get("/transfers", response_model=Page[Transfer])
async def list_transfers(
    session: SessionDep,
    service: Ledger,
    _caller: Reader,
    account_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[Transfer]:
    """Transfers in creation order, optionally those touching one account."""
    return await service.list_transfers(session, account_id, limit, cursor)


@router.get(
    "/transfers/{transfer_id}",
    response_model=Transfer,
    responses=problem_responses(errors.TransferNotFound),
)
async def get_transfer(
    transfer_id: TransferId, session: SessionDep, service: Ledger, _caller: Reader
) -> Transfer:
    """One transfer and its current status."""
    return await service.get_transfer(session, transfer_id)


@router.post(
    "/transfers/{transfer_id}/post",
    response_model=Transfer,
    responses=problem_responses(*errors.PENDING_ERRORS),
)
async def post_pending_transfer(
    transfer_id: TransferId,
    service: Ledger,
    _caller: Writer,
    body: PendingPost | None = None,
) -> Response:
    """Post a pending transfer: all of it, or `amount` of it (the rest is released).
    Repeating the same post returns the same transfer."""
    amount = body.amount if body is not None else None
    return _transfer_response(await service.post_pending(transfer_id, amount), 200)


@router.post(
    "/transfers/{transfer_id}/void",
    response_model=Transfer,
    responses=problem_responses(*errors.PENDING_ERRORS),
)
async def void_pending_transfer(
    transfer_id: TransferId, service: Ledger, _caller: Writer
) -> Response:
    """Release a pending transfer's reservation. Repeating the void returns the same result."""
    return _transfer_response(await service.void_pending(transfer_id), 200)


@router.get("/trial-balance", response_model=TrialBalance)
async def trial_balance(session: SessionDep, service: Ledger, _caller: Reader) -> TrialBalance:
    """Per currency: posted debits and credits (always equal) and pending totals."""
    return await service.trial_balance(session)
