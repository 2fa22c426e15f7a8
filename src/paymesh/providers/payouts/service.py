"""Payouts: beneficiaries validated, instructions recorded `submitting` before they are sent
to the partner bank as pacs.008, then moved by the bank's statuses (`statuses.py`). No HTTP
routing, no SQL strings.

An instruction is committed before it is sent, so a crash between the two leaves it
`submitting`: the same payment id submitted again, or the polling job, resends the very
same message, which the bank recognises by its `MsgId` and `EndToEndId`."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import new_id
from paymesh.kernel.jsonutil import dumps
from paymesh.providers.connectors.bank import PartnerBank, PartnerBanks
from paymesh.providers.iso20022 import CreditTransfer, Iso20022Invalid, StatusReport, build_pacs008
from paymesh.providers.models import PayoutInstruction
from paymesh.providers.payouts import errors, repository
from paymesh.providers.payouts.beneficiaries import is_iban, normalised
from paymesh.providers.payouts.schemas import (
    BankStatusAccepted,
    BeneficiaryValidation,
    Payout,
    PayoutCreate,
    PayoutStatusEntry,
    ValidatedBeneficiary,
)
from paymesh.providers.payouts.statuses import apply_status, outcome_of, time_out

log = structlog.get_logger("paymesh.providers.payouts")

MAX_ISO_ID_LENGTH = 35
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]+$")
POLL_LEASE = dt.timedelta(seconds=60)
MAX_POLL_BACKOFF_SECONDS = 300.0


def derived_id(kind: str, payment_id: str) -> str:
    """`MsgId` / `EndToEndId` for a payment: always the same for the same payment, at most
    35 characters. The payment id itself when it fits (an operator can read it), else a
    digest of it."""
    text = f"{kind}-{payment_id}"
    if len(text) <= MAX_ISO_ID_LENGTH and _PLAIN_ID.match(payment_id):
        return text
    digest = hashlib.sha256(payment_id.encode()).hexdigest()
    return f"{kind}-{digest[: MAX_ISO_ID_LENGTH - len(kind) - 1]}"


@dataclass(frozen=True)
class Sending:
    """An instruction as a send needs it, read before its transaction ended."""

    payment_id: str
    bank: str
    end_to_end_id: str
    message: bytes
    status: str


def sending_of(row: PayoutInstruction) -> Sending:
    return Sending(row.payment_id, row.bank, row.end_to_end_id, row.message.encode(), row.status)


class Payouts:
    def __init__(self, database: Database, outbox: Outbox, banks: PartnerBanks) -> None:
        self.database = database
        self.outbox = outbox
        self.banks = banks

    async def validate(self, body: BeneficiaryValidation) -> ValidatedBeneficiary:
        """The beneficiary normalised, the bank a payout would take, and that bank's own
        lookup of the account."""
        beneficiary = normalised(body.beneficiary)
        bank = self.banks.route(body.currency, beneficiary.country)
        found = await bank.lookup_account(beneficiary.account)
        if found is None:
            raise errors.BeneficiaryAccountNotFound()
        return ValidatedBeneficiary(
            bank=bank.name, beneficiary=beneficiary, account_name=found.name
        )

    async def submit(self, requested_by: str, body: PayoutCreate) -> tuple[Payout, bool]:
        """Record the instruction `submitting` (committed), send it, apply the bank's
        answer. The same payment id again returns the instruction, resending it while it
        is still `submitting`; with other details it is a conflict."""
        sending, created = await self.record(requested_by, body)
        if sending.status == "submitting":
            await self._send(sending, source_is_retry=not created)
        return await self.get(body.payment_id), created

    async def record(self, requested_by: str, body: PayoutCreate) -> tuple[Sending, bool]:
        """The first half of `submit`: the instruction committed `submitting` (or the one
        this payment already has), not sent. Alone, it is what a crash before the send
        leaves behind."""
        body = body.model_copy(update={"beneficiary": normalised(body.beneficiary)})
        request_sha256 = hashlib.sha256(dumps(body.model_dump(mode="json"))).hexdigest()
        async with self.database.transaction() as session:
            row, created = await self._instruction(session, requested_by, body, request_sha256)
            return sending_of(row), created

    async def _instruction(
        self, session: AsyncSession, requested_by: str, body: PayoutCreate, request_sha256: str
    ) -> tuple[PayoutInstruction, bool]:
        existing = await repository.find_by_payment(session, body.payment_id)
        if existing is None:
            row = self._new_instruction(requested_by, body, request_sha256)
            try:
                async with session.begin_nested():
                    session.add(row)
                return row, True
            except IntegrityError:
                # A concurrent request for the same payment made it first.
                existing = await repository.find_by_payment(session, body.payment_id)
                if existing is None:
                    raise
        if existing.request_sha256 != request_sha256:
            raise errors.PayoutConflict(
                detail="this payment's payout instruction has other details"
            )
        return existing, False

    def _new_instruction(
        self, requested_by: str, body: PayoutCreate, request_sha256: str
    ) -> PayoutInstruction:
        beneficiary = body.beneficiary
        bank = self.banks.route(body.currency, beneficiary.country)
        now = utcnow()
        instruction_id = new_id("pyo")
        transfer = self._credit_transfer(bank, instruction_id, body, now)
        try:
            message = build_pacs008(transfer)
        except Iso20022Invalid as error:
            log.warning("payout_message_invalid", payment_id=body.payment_id)
            raise errors.PayoutMessageInvalid(detail=str(error)[:300]) from None
        settings = bank.settings
        deadline = now + dt.timedelta(seconds=settings.status_timeout_seconds)
        return PayoutInstruction(
            id=instruction_id,
            payment_id=body.payment_id,
            requested_by=requested_by,
            request_sha256=request_sha256,
            bank=bank.name,
            message_id=transfer.message_id,
            end_to_end_id=transfer.end_to_end_id,
            amount=body.amount,
            currency=body.currency,
            status="submitting",
            message=message.decode(),
            poll_attempts=0,
            next_poll_at=min(now + dt.timedelta(seconds=settings.poll_interval_seconds), deadline),
            deadline_at=deadline,
            created_at=now,
            updated_at=now,
        )

    @staticmethod
    def _credit_transfer(
        bank: PartnerBank, instruction_id: str, body: PayoutCreate, now: dt.datetime
    ) -> CreditTransfer:
        beneficiary = body.beneficiary
        debtor_is_iban = is_iban(body.debtor.account)
        bic = bank.settings.bic
        return CreditTransfer(
            message_id=derived_id("M", body.payment_id),
            end_to_end_id=derived_id("E", body.payment_id),
            instruction_id=instruction_id,
            transaction_id=derived_id("T", body.payment_id),
            created_at=now,
            settlement_date=now.date(),
            amount_minor=body.amount,
            currency=body.currency,
            debtor_name=body.debtor.name,
            debtor_account_iban=body.debtor.account if debtor_is_iban else None,
            debtor_account_other=None if debtor_is_iban else body.debtor.account,
            debtor_agent_bic=bic,
            creditor_name=beneficiary.name or "",
            creditor_iban=beneficiary.iban,
            creditor_account_number=beneficiary.account_number,
            creditor_bank_code=beneficiary.bank_code,
            creditor_agent_bic=beneficiary.bic,
            creditor_country=beneficiary.country,
            creditor_address_lines=tuple(beneficiary.address or ()),
            purpose_code=body.purpose,
            remittance_info=body.remittance_info,
            # The partner bank holds the platform's payout account and gets the message: it
            # is both the debtor's agent and the agent instructed; the beneficiary's bank is
            # the creditor agent.
            instructing_agent_bic=bic,
            instructed_agent_bic=bic,
        )

    async def _send(self, sending: Sending, *, source_is_retry: bool) -> None:
        """Send the stored message and apply the answer. A bank that does not answer
        leaves the instruction `submitting`, for the polling job to resend."""
        bank = self.banks.get(sending.bank)
        if source_is_retry:
            log.info("payout_resent", payment_id=sending.payment_id, bank=sending.bank)
        try:
            report = await bank.submit(sending.message, sending.end_to_end_id)
        except errors.BankUnavailable as error:
            log.warning("payout_not_sent", payment_id=sending.payment_id, reason=error.detail)
            return
        async with self.database.transaction() as session:
            await apply_status(session, self.outbox, sending.bank, report, "answer")

    async def get(self, payment_id: str) -> Payout:
        async with self.database.transaction(read_only=True) as session:
            return await self.read(session, payment_id)

    async def read(self, session: AsyncSession, payment_id: str) -> Payout:
        row = await repository.find_by_payment(session, payment_id)
        if row is None:
            raise errors.PayoutNotFound()
        history = await repository.history(session, row.id)
        return Payout(
            id=row.id,
            payment_id=row.payment_id,
            bank=row.bank,
            message_id=row.message_id,
            end_to_end_id=row.end_to_end_id,
            amount=row.amount,
            currency=row.currency,
            status=row.status,
            reason_code=row.reason_code,
            reason_text=row.reason_text,
            created_at=row.created_at,
            submitted_at=row.submitted_at,
            finished_at=row.finished_at,
            history=[
                PayoutStatusEntry(
                    bank_status=record.bank_status,
                    reason_code=record.reason_code,
                    reason_text=record.reason_text,
                    source=record.source,
                    late=record.late,
                    recorded_at=record.recorded_at,
                )
                for record in history
            ],
        )

    async def receive_callback(
        self, session: AsyncSession, bank_name: str, body: bytes, headers: Mapping[str, str]
    ) -> BankStatusAccepted:
        """A bank's signed pacs.002: authentic and fresh, for one of its instructions. A
        replay is harmless: the status it carries is already applied."""
        bank = self.banks.get(bank_name)
        report = bank.verify_callback(body, headers)
        row = await apply_status(session, self.outbox, bank.name, report, "callback")
        return BankStatusAccepted(payment_id=row.payment_id, payout_status=row.status)

    async def poll_due(self, limit: int = 50) -> int:
        """One round of the polling job: time out what is past its deadline, resend what
        is still `submitting`, ask the bank about what is `submitted`; the number handled."""
        now = utcnow()
        if await self.database.reads.one(repository.ANY_DUE_INSTRUCTION, now=now) is None:
            return 0  # the usual round: nothing due, no claim's transaction
        due: list[Sending] = []
        expired: list[Sending] = []
        async with self.database.transaction() as session:
            rows = await repository.claim_due_instructions(session, now, now + POLL_LEASE, limit)
            for row in rows:
                (expired if row.deadline_at <= now else due).append(sending_of(row))
        for sending in expired:
            await self._give_up(sending)
        for sending in due:
            try:
                await self._poll(sending)
            except errors.BankNotFound:
                # Its bank was removed from the configuration: the deadline will end it.
                log.error("payout_bank_not_configured", payment_id=sending.payment_id)
        return len(rows)

    async def _give_up(self, sending: Sending) -> None:
        """Past its deadline: ask the bank once more, since its answer may have crossed the
        deadline on the wire, and time the instruction out only when the bank has no final
        status for it (or cannot be asked)."""
        report: StatusReport | None = None
        try:
            report = await self.banks.get(sending.bank).status(sending.end_to_end_id)
        except (errors.BankUnavailable, errors.BankNotFound) as error:
            log.warning(
                "payout_last_poll_failed", payment_id=sending.payment_id, reason=error.detail
            )
        if report is not None and outcome_of(report.status) in ("settled", "rejected"):
            try:
                async with self.database.transaction() as session:
                    await apply_status(session, self.outbox, sending.bank, report, "poll")
                return
            except errors.UnknownPayoutInstruction:
                # The bank answered about another message: not an answer to this one.
                log.error("payout_last_poll_mismatched", payment_id=sending.payment_id)
        async with self.database.transaction() as session:
            row = await repository.find_by_end_to_end_for_update(
                session, sending.bank, sending.end_to_end_id
            )
            if row is None or row.status not in repository.OPEN_STATUSES:
                return  # an answer or a callback finished it meanwhile
            timeout = (row.deadline_at - row.created_at).total_seconds()
            await time_out(session, self.outbox, row, timeout)

    async def _poll(self, sending: Sending) -> None:
        if sending.status == "submitting":
            await self._send(sending, source_is_retry=True)
        else:
            bank = self.banks.get(sending.bank)
            try:
                report = await bank.status(sending.end_to_end_id)
            except errors.BankUnavailable as error:
                log.warning(
                    "payout_poll_failed", payment_id=sending.payment_id, reason=error.detail
                )
                report = None
            if report is not None:
                async with self.database.transaction() as session:
                    await apply_status(session, self.outbox, sending.bank, report, "poll")
        await self._reschedule(sending)

    async def _reschedule(self, sending: Sending) -> None:
        async with self.database.transaction() as session:
            row = await repository.find_by_end_to_end_for_update(
                session, sending.bank, sending.end_to_end_id
            )
            if row is None or row.status not in repository.OPEN_STATUSES:
                return
            row.poll_attempts += 1
            interval = self.banks.get(row.bank).settings.poll_interval_seconds
            backoff = min(interval * 2 ** min(row.poll_attempts, 16), MAX_POLL_BACKOFF_SECONDS)
            row.next_poll_at = min(utcnow() + dt.timedelta(seconds=backoff), row.deadline_at)
