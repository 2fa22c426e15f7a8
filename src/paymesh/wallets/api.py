"""Wallets HTTP API under /v1/wallets.

Customers see and use their own wallets; `ops`, `finance`, `admin` and service accounts
see every wallet. A wallet the caller may not see is 404, never 403. Deposits and
withdrawals are for `finance` (and services) for now; freezing is for `ops`. Every call
that moves money requires an `Idempotency-Key` (400 `idempotency_key_required` without).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.errors import (
    IdempotencyKeyReused,
    RemoteServiceError,
    ServiceUnavailable,
    problem_responses,
)
from paymesh.kernel.money import CurrencyCode
from paymesh.kernel.pagination import InvalidCursor
from paymesh.kernel.routing import SessionDep
from paymesh.wallets import errors
from paymesh.wallets.operations import Operations
from paymesh.wallets.schemas import (
    Hold,
    HoldCapture,
    HoldCreate,
    MovementCreate,
    Operation,
    Page,
    StatementLine,
    Validation,
    Wallet,
    WalletAccount,
    WalletCreate,
)
from paymesh.wallets.service import WalletsService

router = service_router(prefix="/v1/wallets", tags=["wallets"])

HOLDER_ROLES = frozenset({"customer", "ops", "finance", "admin", "service"})
TREASURY_ROLES = frozenset({"finance", "service"})
OPERATOR_ROLES = frozenset({"ops", "admin"})

Holder = Annotated[Caller, Depends(require(roles=HOLDER_ROLES))]
Treasury = Annotated[Caller, Depends(require(roles=TREASURY_ROLES))]
Operator = Annotated[Caller, Depends(require(roles=OPERATOR_ROLES))]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=512, description="From `next_cursor`.")]
ID_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
WalletId = Annotated[str, Path(pattern=ID_PATTERN)]
HoldId = Annotated[str, Path(pattern=ID_PATTERN)]

SEEN = problem_responses(errors.WalletNotFound, ServiceUnavailable)
MOVES = problem_responses(
    errors.WalletNotFound,
    errors.IdempotencyKeyRequired,
    errors.WalletNotActive,
    errors.WalletFrozen,
    errors.InsufficientFunds,
    errors.OperationFailed,
    IdempotencyKeyReused,
    ServiceUnavailable,
)
HOLD_MOVES = MOVES | problem_responses(
    errors.HoldNotFound,
    errors.HoldNotActive,
    errors.HoldExpired,
    errors.ExceedsHoldAmount,
    errors.HoldTooLong,
)


def idempotency_key(request: Request) -> str:
    """The request's Idempotency-Key (its format is checked by the kernel's routing)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        raise errors.IdempotencyKeyRequired()
    return key


IdempotencyKey = Annotated[str, Depends(idempotency_key)]


async def wallets_service(request: Request) -> WalletsService:
    service: WalletsService = request.app.state.runtime.state["wallets"]
    return service


async def operations_service(request: Request) -> Operations:
    service: Operations = request.app.state.runtime.state["operations"]
    return service


Wallets = Annotated[WalletsService, Depends(wallets_service)]
Moves = Annotated[Operations, Depends(operations_service)]


@router.post(
    "",
    status_code=201,
    response_model=Wallet,
    responses=problem_responses(
        errors.IdempotencyKeyRequired, errors.WalletExists, IdempotencyKeyReused, ServiceUnavailable
    ),
)
async def open_wallet(
    body: WalletCreate,
    session: SessionDep,
    service: Wallets,
    caller: Holder,
    key: IdempotencyKey,
    response: Response,
) -> Wallet:
    """Open the caller's wallet in `currency` (one per currency; a second is 409), backed by
    a ledger account that can never be overdrawn."""
    wallet, created = await service.open_wallet(session, caller, body.currency, key)
    response.status_code = 201 if created else 200
    return wallet


@router.get("", response_model=Page[Wallet], responses=problem_responses(InvalidCursor))
async def list_wallets(
    session: SessionDep,
    service: Wallets,
    caller: Holder,
    limit: Limit = 20,
    cursor: Cursor = None,
    owner_id: Annotated[
        str | None, Query(max_length=255, description="Staff only: another holder's wallets.")
    ] = None,
) -> Page[Wallet]:
    """The caller's wallets (staff: `owner_id`'s), oldest first, with their balances
    (minor units)."""
    return await service.list_wallets(session, caller, limit, cursor, owner_id)


@router.get("/{wallet_id}", response_model=Wallet, responses=SEEN)
async def get_wallet(
    wallet_id: WalletId, session: SessionDep, service: Wallets, caller: Holder
) -> Wallet:
    """One wallet with its balances: `available` = posted credits - posted debits - pending
    debits (holds), `pending` (held), `posted`; minor units, from the holder's side."""
    return await service.get_wallet(session, caller, wallet_id)


@router.get(
    "/{wallet_id}/transactions",
    response_model=Page[StatementLine],
    responses=SEEN | problem_responses(InvalidCursor),
)
async def statement(
    wallet_id: WalletId,
    session: SessionDep,
    service: Wallets,
    caller: Holder,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[StatementLine]:
    """The wallet's statement, oldest first, from its ledger entries, with the running
    posted balance and the available balance after each line."""
    try:
        return await service.statement(session, caller, wallet_id, limit, cursor)
    except RemoteServiceError as error:
        if error.remote_code == "invalid_cursor":
            raise InvalidCursor() from None
        raise


ServiceCaller = Annotated[Caller, Depends(require(roles={"service"}))]


@router.get(
    "/{wallet_id}/account",
    response_model=WalletAccount,
    responses=problem_responses(errors.WalletNotFound),
)
async def wallet_account(
    wallet_id: WalletId, session: SessionDep, service: Wallets, _caller: ServiceCaller
) -> WalletAccount:
    """The wallet's owner, state and ledger account, for services that move money
    (payments posts its ledger batches on these accounts)."""
    return await service.account(session, wallet_id)


@router.get(
    "/owners/{owner_id}/{currency}",
    response_model=WalletAccount,
    responses=problem_responses(errors.WalletNotFound),
)
async def owner_wallet(
    owner_id: Annotated[str, Path(pattern=ID_PATTERN)],
    currency: Annotated[CurrencyCode, Path()],
    session: SessionDep,
    service: Wallets,
    _caller: ServiceCaller,
) -> WalletAccount:
    """A user's open wallet in a currency (payments to a user rather than a wallet)."""
    return await service.owned_in(session, owner_id, currency)


@router.get("/{wallet_id}/validation", response_model=Validation)
async def validate(
    wallet_id: WalletId,
    session: SessionDep,
    service: Wallets,
    _caller: Holder,
    currency: Annotated[CurrencyCode | None, Query()] = None,
) -> Validation:
    """Account validation before paying a wallet: whether it exists, is open and can
    receive `currency`, with the holder's name masked (`J*** D***`). Never the balance."""
    return await service.validate(session, wallet_id, currency)


@router.post("/{wallet_id}/deposits", status_code=201, response_model=Operation, responses=MOVES)
async def deposit(
    wallet_id: WalletId,
    body: MovementCreate,
    session: SessionDep,
    moves: Moves,
    caller: Treasury,
    key: IdempotencyKey,
) -> Operation:
    """Credit `amount` minor units to the wallet from the platform's clearing account in
    its currency (`finance`). Frozen wallets still take deposits."""
    return await moves.deposit(session, caller, wallet_id, body.amount, body.reference, key)


@router.post("/{wallet_id}/withdrawals", status_code=201, response_model=Operation, responses=MOVES)
async def withdraw(
    wallet_id: WalletId,
    body: MovementCreate,
    session: SessionDep,
    moves: Moves,
    caller: Treasury,
    key: IdempotencyKey,
) -> Operation:
    """Debit `amount` minor units from the wallet to the clearing account (`finance`).
    409 `insufficient_funds` when the available balance is lower; nothing changes."""
    return await moves.withdraw(session, caller, wallet_id, body.amount, body.reference, key)


@router.post("/{wallet_id}/holds", status_code=201, response_model=Hold, responses=HOLD_MOVES)
async def place_hold(
    wallet_id: WalletId,
    body: HoldCreate,
    session: SessionDep,
    moves: Moves,
    caller: Holder,
    key: IdempotencyKey,
) -> Hold:
    """Reserve `amount` minor units (a pending ledger transfer): they leave `available` at
    once and are captured, released, or released by themselves after
    `expires_in_seconds`."""
    return await moves.place_hold(
        session, caller, wallet_id, body.amount, body.expires_in_seconds, key
    )


@router.get(
    "/{wallet_id}/holds/{hold_id}",
    response_model=Hold,
    responses=SEEN | problem_responses(errors.HoldNotFound),
)
async def get_hold(
    wallet_id: WalletId, hold_id: HoldId, session: SessionDep, moves: Moves, caller: Holder
) -> Hold:
    """One hold and its state."""
    return await moves.get_hold(session, caller, wallet_id, hold_id)


@router.post("/{wallet_id}/holds/{hold_id}/capture", response_model=Hold, responses=HOLD_MOVES)
async def capture_hold(
    wallet_id: WalletId,
    hold_id: HoldId,
    session: SessionDep,
    moves: Moves,
    caller: Holder,
    key: IdempotencyKey,
    body: HoldCapture | None = None,
) -> Hold:
    """Take all of the hold, or `amount` minor units of it (the rest is released)."""
    amount = body.amount if body is not None else None
    return await moves.capture(session, caller, wallet_id, hold_id, amount, key)


@router.post("/{wallet_id}/holds/{hold_id}/release", response_model=Hold, responses=HOLD_MOVES)
async def release_hold(
    wallet_id: WalletId,
    hold_id: HoldId,
    session: SessionDep,
    moves: Moves,
    caller: Holder,
    key: IdempotencyKey,
) -> Hold:
    """Release the hold: its amount is available again."""
    return await moves.release(session, caller, wallet_id, hold_id, key)


@router.post(
    "/{wallet_id}/freeze",
    response_model=Wallet,
    responses=SEEN | problem_responses(errors.WalletNotActive),
)
async def freeze(
    wallet_id: WalletId, session: SessionDep, service: Wallets, caller: Operator
) -> Wallet:
    """Freeze the wallet (`ops`): no withdrawal or hold until unfrozen; credits still land."""
    return await service.freeze(session, caller, wallet_id)


@router.post(
    "/{wallet_id}/unfreeze",
    response_model=Wallet,
    responses=SEEN | problem_responses(errors.WalletNotFrozen),
)
async def unfreeze(
    wallet_id: WalletId, session: SessionDep, service: Wallets, caller: Operator
) -> Wallet:
    """Unfreeze the wallet (`ops`)."""
    return await service.unfreeze(session, caller, wallet_id)


@router.post(
    "/{wallet_id}/close",
    response_model=Wallet,
    responses=SEEN | problem_responses(errors.WalletNotActive, errors.BalanceNotZero),
)
async def close(
    wallet_id: WalletId, session: SessionDep, service: Wallets, caller: Holder
) -> Wallet:
    """Close the wallet (its owner or `ops`): only at a zero balance with no open hold."""
    return await service.close(session, caller, wallet_id)
