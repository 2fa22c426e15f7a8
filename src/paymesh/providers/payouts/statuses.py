"""One way for a bank status to reach a payout instruction, whichever way it came (the
answer to the pacs.008, the bank's signed callback, our poll): statuses only move forward.

    submitting ──pending──▶ submitted ──ACSC/ACCC──▶ settled
         │                      │      ──RJCT──────▶ rejected
         └──────────────────────┴──(deadline)──────▶ timed_out

A duplicate or an out-of-order status changes nothing; a status after `timed_out` is
recorded as late and logged for an operator, and changes nothing else."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import utcnow
from paymesh.kernel.events import Outbox
from paymesh.kernel.ids import new_id
from paymesh.providers.iso20022 import PENDING, REJECTED, SETTLED, StatusReport
from paymesh.providers.models import PayoutInstruction, PayoutStatusRecord
from paymesh.providers.payouts import errors, repository
from paymesh.providers.payouts.schemas import PayoutOutcome, StatusSource

log = structlog.get_logger("paymesh.providers.payouts")

SETTLED_EVENT = "providers.payout.settled"
REJECTED_EVENT = "providers.payout.rejected"
TIMED_OUT_EVENT = "providers.payout.timed_out"
FINAL_STATUSES = frozenset({"settled", "rejected", "timed_out"})
_EVENTS = {"settled": SETTLED_EVENT, "rejected": REJECTED_EVENT, "timed_out": TIMED_OUT_EVENT}
Outcome = Literal["settled", "rejected", "pending"]


def outcome_of(bank_status: str) -> Outcome | None:
    if bank_status in SETTLED:
        return "settled"
    if bank_status in REJECTED:
        return "rejected"
    if bank_status in PENDING:
        return "pending"
    return None


async def apply_status(
    session: AsyncSession,
    outbox: Outbox,
    bank: str,
    report: StatusReport,
    source: StatusSource,
) -> PayoutInstruction:
    """Apply `report` to the instruction it names (locked for the transaction); raises
    `UnknownPayoutInstruction` when it names none of `bank`'s instructions."""
    row = await repository.find_by_end_to_end_for_update(
        session, bank, report.original_end_to_end_id
    )
    if row is None or (report.original_message_id and report.original_message_id != row.message_id):
        raise errors.UnknownPayoutInstruction()
    outcome = outcome_of(report.status)
    if row.status == "timed_out":
        await _record_late(session, row, report, source)
    elif row.status in FINAL_STATUSES:
        log.info("payout_status_ignored", payment_id=row.payment_id, bank_status=report.status)
    elif outcome is None:
        log.warning("payout_status_unknown", payment_id=row.payment_id, bank_status=report.status)
    elif outcome == "pending":
        await _keep_waiting(session, row, report, source)
    else:
        await _finish(session, outbox, row, report, source, outcome)
    return row


async def _keep_waiting(
    session: AsyncSession, row: PayoutInstruction, report: StatusReport, source: StatusSource
) -> None:
    if row.status == "submitted" and row.bank_status == report.status:
        return  # the same pending status again
    now = utcnow()
    row.status = "submitted"
    row.bank_status = report.status
    row.submitted_at = row.submitted_at or now
    row.updated_at = now
    _record(session, row, report, source, now)


async def _finish(
    session: AsyncSession,
    outbox: Outbox,
    row: PayoutInstruction,
    report: StatusReport,
    source: StatusSource,
    outcome: Literal["settled", "rejected"],
) -> None:
    now = utcnow()
    row.status = outcome
    row.bank_status = report.status
    row.reason_code = report.reason_code if outcome == "rejected" else None
    row.reason_text = _text(report.reason_text) if outcome == "rejected" else None
    row.submitted_at = row.submitted_at or now
    row.finished_at = now
    row.updated_at = now
    row.next_poll_at = None
    _record(session, row, report, source, now)
    await _emit(session, outbox, row, outcome)
    log.info(
        "payout_finished",
        payment_id=row.payment_id,
        status=outcome,
        reason_code=row.reason_code,
        source=source,
    )


async def time_out(
    session: AsyncSession, outbox: Outbox, row: PayoutInstruction, timeout_seconds: float
) -> None:
    """Give up on an instruction the bank left unanswered (the row is claimed or locked)."""
    now = utcnow()
    row.status = "timed_out"
    row.reason_code = None
    row.reason_text = f"no final status from the bank within {int(timeout_seconds)} s"
    row.finished_at = now
    row.updated_at = now
    row.next_poll_at = None
    await _emit(session, outbox, row, "timed_out")
    log.warning("payout_timed_out", payment_id=row.payment_id, bank=row.bank)


async def _record_late(
    session: AsyncSession, row: PayoutInstruction, report: StatusReport, source: StatusSource
) -> None:
    seen = (
        await session.execute(
            select(PayoutStatusRecord.id).where(
                PayoutStatusRecord.instruction_id == row.id,
                PayoutStatusRecord.bank_message_id == report.message_id,
            )
        )
    ).first()
    if seen is not None:
        return
    # An operator's matter: the payment was given up while the bank may have paid.
    log.error(
        "payout_status_after_timeout",
        payment_id=row.payment_id,
        bank=row.bank,
        bank_status=report.status,
        reason_code=report.reason_code,
    )
    _record(session, row, report, source, utcnow(), late=True)


def _record(
    session: AsyncSession,
    row: PayoutInstruction,
    report: StatusReport,
    source: StatusSource,
    now: dt.datetime,
    *,
    late: bool = False,
) -> None:
    session.add(
        PayoutStatusRecord(
            id=new_id("pys"),
            instruction_id=row.id,
            bank_status=report.status[:8],
            reason_code=(report.reason_code or None) and report.reason_code[:8],
            reason_text=_text(report.reason_text),
            source=source,
            bank_message_id=report.message_id[:35],
            late=late,
            recorded_at=now,
        )
    )


async def _emit(
    session: AsyncSession,
    outbox: Outbox,
    row: PayoutInstruction,
    status: Literal["settled", "rejected", "timed_out"],
) -> None:
    outcome = PayoutOutcome(
        payment_id=row.payment_id,
        instruction_id=row.id,
        bank=row.bank,
        status=status,
        reason_code=row.reason_code,
        reason_text=row.reason_text,
    )
    await outbox.add(session, _EVENTS[status], outcome.model_dump(mode="json"), row.payment_id)


def _text(value: str | None) -> str | None:
    return value[:256] if value else None
