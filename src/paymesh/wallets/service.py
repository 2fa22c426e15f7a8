"""Wallet business rules: opening, reading (balances from the ledger), freezing, closing,
statements and account validation. Money movements are in `operations.py`.

Who sees what: a wallet's owner sees it; the `ops`, `finance`, `admin` and `service` roles
see every wallet; anyone else gets 404 for it, never 403, so ids cannot be probed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.auth import Caller
from paymesh.kernel.db import utcnow
from paymesh.kernel.errors import IdempotencyKeyReused, RemoteServiceError
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import new_id
from paymesh.ledger.client import LedgerClient
from paymesh.ledger.schemas import Account, AccountCreate, AccountFlags
from paymesh.wallets import errors, repository
from paymesh.wallets.holders import HolderNames, mask_name
from paymesh.wallets.schemas import (
    Balances,
    Page,
    StatementLine,
    Validation,
    Wallet,
    WalletAccount,
)

PRIVILEGED_ROLES = frozenset({"ops", "finance", "admin", "service"})
WALLET_ACCOUNT_CODE = 2
"""Ledger account code of customer wallets (the ledger demo's convention)."""


def sees_every_wallet(caller: Caller) -> bool:
    return bool(caller.roles & PRIVILEGED_ROLES)


def request_digest(*parts: str) -> str:
    """A fixed-size key for (operation kind, target, caller, Idempotency-Key)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


async def checkpoint(session: AsyncSession) -> None:
    """Commit what the request wrote so far: the recovery point a crash (or a retry) resumes
    from, before another service is called. The request's transaction goes on after it."""
    await session.commit()


def balances_of(account: Account | None) -> Balances:
    if account is None:
        return Balances(available=0, pending=0, posted=0)
    posted = account.credits_posted - account.debits_posted
    return Balances(
        available=posted - account.debits_pending, pending=account.debits_pending, posted=posted
    )


def wallet_event(row: Any) -> dict[str, Any]:
    return {
        "wallet_id": row.id,
        "owner_id": row.owner_id,
        "currency": row.currency,
        "ledger_account_id": row.ledger_account_id,
    }


class WalletsService:
    def __init__(self, ledger: LedgerClient, outbox: Outbox, holders: HolderNames) -> None:
        self.ledger = ledger
        self.outbox = outbox
        self.holders = holders

    # -- reading -------------------------------------------------------------------------

    async def visible_wallet(self, session: AsyncSession, caller: Caller, wallet_id: str) -> Any:
        row = await repository.get_wallet(session, wallet_id)
        if row is None or not (sees_every_wallet(caller) or row.owner_id == caller.subject):
            raise errors.WalletNotFound(detail=f"no wallet {wallet_id}")
        return row

    async def account_of(self, row: Any) -> Account | None:
        try:
            return await self.ledger.get_account(row.ledger_account_id)
        except RemoteServiceError as error:
            if error.remote_code == "account_not_found" and row.status == "opening":
                return None
            raise

    async def present(self, row: Any) -> Wallet:
        return Wallet(
            id=row.id,
            owner_id=row.owner_id,
            currency=row.currency,
            status=row.status,
            balance=balances_of(await self.account_of(row)),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def get_wallet(self, session: AsyncSession, caller: Caller, wallet_id: str) -> Wallet:
        return await self.present(await self.visible_wallet(session, caller, wallet_id))

    async def list_wallets(
        self,
        session: AsyncSession,
        caller: Caller,
        limit: int,
        cursor: str | None,
        owner_id: str | None = None,
    ) -> Page[Wallet]:
        """The caller's wallets; staff may name another owner (a customer naming someone
        else sees nothing, as if that owner had no wallet)."""
        owner = owner_id if owner_id is not None else caller.subject
        if owner != caller.subject and not sees_every_wallet(caller):
            return Page[Wallet](data=[])
        rows, next_cursor = await repository.list_wallets(session, owner, limit, cursor)
        return Page[Wallet](data=[await self.present(row) for row in rows], next_cursor=next_cursor)

    async def statement(
        self,
        session: AsyncSession,
        caller: Caller,
        wallet_id: str,
        limit: int,
        cursor: str | None,
    ) -> Page[StatementLine]:
        row = await self.visible_wallet(session, caller, wallet_id)
        if row.status == "opening":
            return Page[StatementLine](data=[])
        entries = await self.ledger.list_entries(row.ledger_account_id, limit, cursor)
        lines = [
            StatementLine(
                entry_id=entry.id,
                transfer_id=entry.transfer_id,
                kind=entry.kind,
                direction=entry.side,
                amount=entry.amount,
                balance=entry.credits_posted - entry.debits_posted,
                available=entry.credits_posted - entry.debits_posted - entry.debits_pending,
                created_at=entry.created_at,
            )
            for entry in entries.data
        ]
        return Page[StatementLine](data=lines, next_cursor=entries.next_cursor)

    async def account(self, session: AsyncSession, wallet_id: str) -> WalletAccount:
        row = await repository.get_wallet(session, wallet_id)
        if row is None:
            raise errors.WalletNotFound(detail=f"no wallet {wallet_id}")
        return WalletAccount(
            wallet_id=row.id,
            owner_id=row.owner_id,
            currency=row.currency,
            status=row.status,
            ledger_account_id=row.ledger_account_id,
        )

    async def owned_in(self, session: AsyncSession, owner_id: str, currency: str) -> WalletAccount:
        """The owner's open wallet in `currency` (one per currency)."""
        row = await repository.open_wallet_in(session, owner_id, currency)
        if row is None:
            raise errors.WalletNotFound(detail=f"no open {currency} wallet for this user")
        return await self.account(session, row.id)

    async def validate(
        self, session: AsyncSession, wallet_id: str, currency: str | None
    ) -> Validation:
        row = await repository.get_wallet(session, wallet_id)
        if row is None:
            return Validation(
                wallet_id=wallet_id,
                exists=False,
                active=False,
                currency=None,
                can_receive=False,
                holder_name=None,
            )
        active = row.status in ("active", "frozen")  # frozen wallets still take credits
        return Validation(
            wallet_id=row.id,
            exists=True,
            active=active,
            currency=row.currency,
            can_receive=active and (currency is None or currency == row.currency),
            holder_name=mask_name(await self.holders.legal_name(row.owner_id)) if active else None,
        )

    # -- opening -------------------------------------------------------------------------

    async def open_wallet(
        self, session: AsyncSession, caller: Caller, currency: str, key: str
    ) -> tuple[Wallet, bool]:
        """Open the caller's wallet in `currency`: the wallet row first (committed, status
        `opening`), then its ledger account (the id is the wallet's, so a repeat is a
        no-op), then `active`. A crash in between leaves an `opening` wallet that a retry
        with the same key, or the recovery job, finishes."""
        request_key = request_digest("open", caller.idempotency_scope, key)
        row = await repository.wallet_for_request(session, request_key)
        if row is not None and row.currency != currency:
            raise IdempotencyKeyReused()
        created = row is None
        if row is None:
            if await repository.open_wallet_in(session, caller.subject, currency) is not None:
                raise errors.WalletExists(detail=f"a {currency} wallet is already open")
            now = utcnow()
            wallet_id = new_id("wal")
            values = {
                "id": wallet_id,
                "owner_id": caller.subject,
                "currency": currency,
                "status": "opening",
                "ledger_account_id": wallet_id,
                "request_key": request_key,
                "created_at": now,
                "updated_at": now,
            }
            try:
                await repository.insert_wallet(session, values)
                await checkpoint(session)
            except IntegrityError:  # a concurrent request opened the same currency
                await session.rollback()
                raise errors.WalletExists(detail=f"a {currency} wallet is already open") from None
            row = await repository.get_wallet(session, wallet_id)
        await self.finish_opening(session, row)
        return await self.present(await repository.get_wallet(session, row.id)), created

    async def finish_opening(self, session: AsyncSession, row: Any) -> None:
        if row.status != "opening":
            return
        await self.ledger.create_account(
            AccountCreate(
                id=row.ledger_account_id,
                currency=row.currency,
                code=WALLET_ACCOUNT_CODE,
                flags=AccountFlags(debits_must_not_exceed_credits=True),
                metadata={"wallet_id": row.id, "owner_id": row.owner_id},
            )
        )
        if await repository.set_wallet_status(session, row.id, "active", ("opening",)):
            await self.outbox.add(
                session, "wallets.wallet.opened", wallet_event(row), subject=row.id
            )

    # -- operator actions ----------------------------------------------------------------

    async def freeze(self, session: AsyncSession, caller: Caller, wallet_id: str) -> Wallet:
        row = await self.visible_wallet(session, caller, wallet_id)
        if not await repository.set_wallet_status(session, row.id, "frozen", ("active",)):
            raise errors.WalletNotActive(detail=f"the wallet is {row.status}")
        await self._event(session, "wallets.wallet.frozen", row, caller)
        return await self.present(await repository.get_wallet(session, row.id))

    async def unfreeze(self, session: AsyncSession, caller: Caller, wallet_id: str) -> Wallet:
        row = await self.visible_wallet(session, caller, wallet_id)
        if not await repository.set_wallet_status(session, row.id, "active", ("frozen",)):
            raise errors.WalletNotFrozen(detail=f"the wallet is {row.status}")
        await self._event(session, "wallets.wallet.unfrozen", row, caller)
        return await self.present(await repository.get_wallet(session, row.id))

    async def close(self, session: AsyncSession, caller: Caller, wallet_id: str) -> Wallet:
        """Close a wallet whose ledger account is at zero, with no hold open."""
        row = await self.visible_wallet(session, caller, wallet_id)
        if row.status not in ("active", "frozen"):
            raise errors.WalletNotActive(detail=f"the wallet is {row.status}")
        # Closed first, checked after, in one transaction: a money movement records its
        # operation by touching the wallet row under its status (operations._record), so
        # either it committed before this update (and is counted below: refused, rolled
        # back) or it finds the wallet closed. The ledger is read after the update too.
        if not await repository.set_wallet_status(session, row.id, "closed", (row.status,)):
            raise errors.WalletNotActive(detail="the wallet changed; retry")
        in_flight = await repository.count_pending_operations(session, row.id)
        open_holds = await repository.count_open_holds(session, row.id)
        balance = balances_of(await self.account_of(row))
        if balance.posted != 0 or balance.pending != 0 or open_holds or in_flight:
            raise errors.BalanceNotZero(
                detail=f"posted {balance.posted}, reserved {balance.pending}, "
                f"{open_holds} open hold(s), {in_flight} movement(s) in progress"
            )
        await self._event(session, "wallets.wallet.closed", row, caller)
        return await self.present(await repository.get_wallet(session, row.id))

    async def _event(self, session: AsyncSession, kind: str, row: Any, caller: Caller) -> None:
        data = wallet_event(row) | {"by": caller.subject}
        await self.outbox.add(session, kind, data, subject=row.id)
