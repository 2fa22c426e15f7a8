"""The events the providers service writes: a KYC vendor's decision on a check, and the
final status of a payout instruction sent to a partner bank. Their data are the models the
service dumps into them (`KycDecision`, `PayoutOutcome`), described where they are defined."""

from __future__ import annotations

from paymesh.kernel.event_catalog import EventType
from paymesh.providers.payouts.schemas import PayoutOutcome
from paymesh.providers.schemas import KycDecision

EVENTS: tuple[EventType, ...] = (
    EventType(
        name="providers.kyc.decided",
        summary="A KYC vendor's signed callback decided a check.",
        data=KycDecision,
    ),
    EventType(
        name="providers.payout.settled",
        summary="The partner bank reported a payout instruction settled.",
        data=PayoutOutcome,
    ),
    EventType(
        name="providers.payout.rejected",
        summary="The partner bank rejected a payout instruction.",
        data=PayoutOutcome,
    ),
    EventType(
        name="providers.payout.timed_out",
        summary="A payout instruction had no final status from the bank by its deadline.",
        data=PayoutOutcome,
    ),
)
