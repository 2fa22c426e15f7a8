"""Ledger business operations. Transfers go through the group-commit engine; account
creation and reads use the request's unit of work."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import utcnow
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import new_id
from paymesh.kernel.reads import DirectReads
from paymesh.ledger import errors, repository
from paymesh.ledger.engine import TransferEngine
from paymesh.ledger.posting import (
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    CreateTransfer,
    ExpirePending,
    Operation,
    Outcome,
    PostPending,
    Result,
    TransferState,
    VoidPending,
)
from paymesh.ledger.schemas import (
    Account,
    AccountCreate,
    AccountFlags,
    Balance,
    CurrencyTotals,
    Entry,
    Page,
    Transfer,
    TransferBatch,
    TransferBatchResult,
    TransferCreate,
    TransferResult,
    TrialBalance,
)


def _flags_bits(flags: AccountFlags) -> int:
    if flags.debits_must_not_exceed_credits and flags.credits_must_not_exceed_debits:
        raise errors.FlagsAreMutuallyExclusive()
    bits = DEBITS_MUST_NOT_EXCEED_CREDITS if flags.debits_must_not_exceed_credits else 0
    return bits | (CREDITS_MUST_NOT_EXCEED_DEBITS if flags.credits_must_not_exceed_debits else 0)


def account_from_row(row: Any) -> Account:
    return account_from_mapping(row._mapping)


def account_from_mapping(mapping: Mapping[str, Any]) -> Account:
    return Account(
        id=mapping["id"],
        currency=mapping["currency"],
        code=mapping["code"],
        flags=AccountFlags(
            debits_must_not_exceed_credits=bool(mapping["flags"] & DEBITS_MUST_NOT_EXCEED_CREDITS),
            credits_must_not_exceed_debits=bool(mapping["flags"] & CREDITS_MUST_NOT_EXCEED_DEBITS),
        ),
        metadata=mapping["metadata"],
        debits_pending=mapping["debits_pending"],
        debits_posted=mapping["debits_posted"],
        credits_pending=mapping["credits_pending"],
        credits_posted=mapping["credits_posted"],
        created_at=mapping["created_at"],
    )


def transfer_from_state(state: TransferState) -> Transfer:
    return Transfer.model_validate(state, from_attributes=True)


def create_operation(data: TransferCreate) -> CreateTransfer:
    return CreateTransfer(
        id=data.id,
        debit_account_id=data.debit_account_id,
        credit_account_id=data.credit_account_id,
        amount=data.amount,
        currency=data.currency,
        code=data.code,
        pending=data.pending,
        timeout_seconds=data.timeout_seconds,
        metadata=data.metadata,
    )


def _outcome(result: Result) -> Outcome:
    if isinstance(result, errors.LedgerError):
        raise result
    return result


class LedgerService:
    def __init__(self, engine: TransferEngine, outbox: Outbox, reads: DirectReads) -> None:
        self.engine = engine
        self.outbox = outbox
        self.reads = reads

    # -- accounts ------------------------------------------------------------------------

    async def create_account(
        self, session: AsyncSession, data: AccountCreate
    ) -> tuple[Account, bool]:
        """Create an account; returns (account, created). Same id and fields: not created."""
        flags = _flags_bits(data.flags)
        account_id = data.id or new_id("acc")
        values: dict[str, Any] = {
            "id": account_id,
            "currency": data.currency,
            "code": data.code,
            "flags": flags,
            "metadata": data.metadata,
            "debits_pending": 0,
            "debits_posted": 0,
            "credits_pending": 0,
            "credits_posted": 0,
            "created_at": utcnow(),
        }
        if not await repository.insert_account_if_absent(session, values):
            existing = await repository.get_account(session, account_id)
            assert existing is not None
            same = (
                existing.currency == data.currency
                and existing.code == data.code
                and existing.flags == flags
                and existing.metadata == data.metadata
            )
            if not same:
                raise errors.ExistsWithDifferentFields(detail=f"account {account_id} exists")
            return account_from_row(existing), False
        account = Account(**{**values, "flags": data.flags})
        await self.outbox.add(
            session, "ledger.account.created", account.model_dump(mode="json"), subject=account.id
        )
        return account, True

    async def read_account(self, account_id: str) -> Account:
        """The account as committed, read outside any unit of work (`GET` an account)."""
        found = await repository.read_account(self.reads, account_id)
        if found is None:
            raise errors.AccountNotFound(detail=f"no account {account_id}")
        return account_from_mapping(found)

    async def get_account(self, session: AsyncSession, account_id: str) -> Account:
        row = await repository.get_account(session, account_id)
        if row is None:
            raise errors.AccountNotFound(detail=f"no account {account_id}")
        return account_from_row(row)

    async def list_accounts(
        self,
        session: AsyncSession,
        currency: str | None,
        code: int | None,
        limit: int,
        cursor: str | None,
    ) -> Page[Account]:
        rows, next_cursor = await repository.list_accounts(session, currency, code, limit, cursor)
        return Page[Account](data=[account_from_row(row) for row in rows], next_cursor=next_cursor)

    # -- transfers -----------------------------------------------------------------------

    async def create_transfer(self, data: TransferCreate) -> Outcome:
        (result,) = await self.engine.submit([create_operation(data)])
        return _outcome(result)

    async def post_pending(self, transfer_id: str, amount: int | None) -> Outcome:
        (result,) = await self.engine.submit([PostPending(transfer_id, amount)])
        return _outcome(result)

    async def void_pending(self, transfer_id: str) -> Outcome:
        (result,) = await self.engine.submit([VoidPending(transfer_id)])
        return _outcome(result)

    async def create_batch(self, batch: TransferBatch) -> TransferBatchResult:
        operations: list[Operation] = [create_operation(item) for item in batch.transfers]
        results = await self.engine.submit(operations, atomic=batch.atomic)
        return TransferBatchResult(
            results=[
                TransferResult(id=item.id, status="failed", code=result.code)
                if isinstance(result, errors.LedgerError)
                else TransferResult(id=item.id, status="created" if result.created else "exists")
                for item, result in zip(batch.transfers, results, strict=True)
            ]
        )

    async def get_transfer(self, session: AsyncSession, transfer_id: str) -> Transfer:
        row = await repository.get_transfer(session, transfer_id)
        if row is None:
            raise errors.TransferNotFound(detail=f"no transfer {transfer_id}")
        return transfer_from_state(repository.transfer_state(row))

    async def list_transfers(
        self, session: AsyncSession, account_id: str | None, limit: int, cursor: str | None
    ) -> Page[Transfer]:
        rows, next_cursor = await repository.list_transfers(session, account_id, limit, cursor)
        return Page[Transfer](
            data=[transfer_from_state(repository.transfer_state(row)) for row in rows],
            next_cursor=next_cursor,
        )

    async def due_pending(self, session: AsyncSession, limit: int = 1000) -> list[str]:
        return await repository.due_pending_transfers(session, utcnow(), limit)

    async def expire(self, transfer_ids: list[str]) -> int:
        """Expire pending transfers whose timeout has passed; returns how many expired."""
        results = await self.engine.submit([ExpirePending(item) for item in transfer_ids])
        return sum(1 for result in results if isinstance(result, Outcome) and result.created)

    # -- statements and balances ---------------------------------------------------------

    async def list_entries(
        self, session: AsyncSession, account_id: str, limit: int, cursor: str | None
    ) -> Page[Entry]:
        await self.get_account(session, account_id)
        rows, next_cursor = await repository.list_entries(session, account_id, limit, cursor)
        return Page[Entry](
            data=[
                Entry(
                    **{key: value for key, value in row._mapping.items() if key != "account_id"},
                    balance_posted=row.credits_posted - row.debits_posted,
                )
                for row in rows
            ],
            next_cursor=next_cursor,
        )

    async def balance_at(self, session: AsyncSession, account_id: str, at: dt.datetime) -> Balance:
        account = await self.get_account(session, account_id)
        row = await repository.balance_at(session, account_id, at)
        balances = (
            {
                key: 0
                for key in ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
            }
            if row is None
            else {
                "debits_pending": row.debits_pending,
                "debits_posted": row.debits_posted,
                "credits_pending": row.credits_pending,
                "credits_posted": row.credits_posted,
            }
        )
        return Balance(account_id=account_id, at=at, currency=account.currency, **balances)

    async def trial_balance(self, session: AsyncSession) -> TrialBalance:
        totals = [
            CurrencyTotals(
                **row,
                balanced=row["debits_posted"] == row["credits_posted"]
                and row["debits_pending"] == row["credits_pending"],
            )
            for row in await repository.totals_by_currency(session)
        ]
        return TrialBalance(currencies=totals, balanced=all(item.balanced for item in totals))
