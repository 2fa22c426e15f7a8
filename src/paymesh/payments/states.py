"""The payment's states and the only transitions between them, checked in one place.

    created ──► requires_otp ──► processing ──► succeeded ──► partially_reversed ──► reversed
       │  │          │   │            │   │         └───────────────────────────────────┘
       │  └──► under_review ──► processing └──► failed
       │                                  │
       │                                  └──► in_transit ──► succeeded | failed   (payouts)
       └──► failed / canceled (from created, requires_otp, under_review, processing: failed)

`in_transit` is a payout's wait for its partner bank: the money is reserved on the ledger
and the instruction sent; the bank's settlement posts it (`succeeded`), a rejection or a
timeout voids it (`failed`).

A transition not in `TRANSITIONS` raises `IllegalTransition` and the database row is updated
only with the expected current state in its WHERE clause: a transition raced by another
process changes nothing.
"""

from __future__ import annotations

from typing import Literal

from paymesh.payments.errors import IllegalTransition

State = Literal[
    "created",
    "requires_otp",
    "under_review",
    "processing",
    "in_transit",
    "succeeded",
    "failed",
    "canceled",
    "partially_reversed",
    "reversed",
]

TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"requires_otp", "under_review", "processing", "failed", "canceled"}),
    "requires_otp": frozenset({"processing", "failed", "canceled"}),
    "under_review": frozenset({"processing", "failed", "canceled"}),
    "processing": frozenset({"in_transit", "succeeded", "failed"}),
    "in_transit": frozenset({"succeeded", "failed"}),
    "succeeded": frozenset({"partially_reversed", "reversed"}),
    "partially_reversed": frozenset({"partially_reversed", "reversed"}),
    "failed": frozenset(),
    "canceled": frozenset(),
    "reversed": frozenset(),
}
TERMINAL = frozenset({"failed", "canceled", "reversed"})
SETTLED = frozenset({"succeeded", "partially_reversed", "reversed"})
WORKING = frozenset({"created", "processing"})
"""States a worker moves on by itself; a payment left in one after a crash is resumed (and
`in_transit` once the bank's outcome is recorded: `Payment.bank_outcome`)."""


def check(current: str, target: str) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(detail=f"a {current} payment cannot become {target}")
