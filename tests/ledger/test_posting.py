"""`Posting` directly: what one group commit records for the writer.

The engine puts the groups of several requests into one Posting, so what one group does
must not leak into what another reports or into what an undone group leaves behind.
"""

from __future__ import annotations

import datetime as dt

from paymesh.ledger import errors
from paymesh.ledger.posting import (
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountState,
    CreateTransfer,
    Outcome,
    Posting,
    PostPending,
    VoidPending,
)

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _posting(*, guarded_funds: int | None = None) -> Posting:
    accounts = {
        "a": AccountState("a", "USD", 0, 0, 0, 0, 0),
        "b": AccountState("b", "USD", 0, 0, 0, 0, 0),
    }
    if guarded_funds is not None:
        accounts["g"] = AccountState("g", "USD", DEBITS_MUST_NOT_EXCEED_CREDITS, 0, 0, 0, 0)
        accounts["g"].credits_posted = guarded_funds
    return Posting(accounts, {}, NOW)


def _create(transfer_id: str, amount: int, *, pending: bool = False) -> CreateTransfer:
    return CreateTransfer(transfer_id, "a", "b", amount, "USD", pending=pending)


class TestApplyGroup:
    def test_an_undone_atomic_group_leaves_earlier_groups_as_they_were(self) -> None:
        posting = _posting()
        (created,) = posting.apply_group([_create("p", 100, pending=True)], atomic=False)

        results = posting.apply_group([PostPending("p"), _create("bad", 0)], atomic=True)

        assert isinstance(created, Outcome)
        assert [type(result) for result in results] == [
            errors.LinkedTransferFailed,
            errors.AmountMustBePositive,
        ]
        # What the writer inserts for `p` is the pending transfer, not the undone post.
        stored = posting.new_transfers["p"]
        assert (stored.status, stored.posted_amount) == ("pending", 0)
        assert posting.transfers["p"] is stored
        assert "p" not in posting.resolved_transfers
        assert [entry["kind"] for entry in posting.entries] == ["pending", "pending"]
        assert (posting.accounts["a"].debits_pending, posting.accounts["a"].debits_posted) == (
            100,
            0,
        )

    def test_an_undone_atomic_group_restores_accounts_entries_and_events(self) -> None:
        posting = _posting(guarded_funds=50)
        posting.apply_group([_create("first", 10)], atomic=False)
        before = {key: (a.debits_posted, a.credits_posted) for key, a in posting.accounts.items()}

        results = posting.apply_group(
            [
                CreateTransfer("x", "g", "a", 30, "USD"),
                CreateTransfer("y", "g", "b", 30, "USD"),  # 60 > 50
            ],
            atomic=True,
        )

        assert [result.code for result in results] == [  # type: ignore[union-attr]
            "linked_transfer_failed",
            "exceeds_credits",
        ]
        after = {key: (a.debits_posted, a.credits_posted) for key, a in posting.accounts.items()}
        assert after == before
        assert set(posting.new_transfers) == {"first"}
        assert len(posting.entries) == 2
        assert [event_type for event_type, _ in posting.events] == ["ledger.transfer.posted"]
        assert "g" not in posting.dirty_accounts

    def test_outcomes_and_events_are_snapshots_of_their_own_operation(self) -> None:
        posting = _posting()
        (created,) = posting.apply_group([_create("p", 100, pending=True)], atomic=False)
        (posted,) = posting.apply_group([PostPending("p", 60)], atomic=False)

        assert isinstance(created, Outcome)
        assert isinstance(posted, Outcome)
        assert (created.transfer.status, created.transfer.posted_amount) == ("pending", 0)
        assert (posted.transfer.status, posted.transfer.posted_amount) == ("posted", 60)
        (pending_type, pending_data), (posted_type, posted_data) = posting.events
        assert (pending_type, pending_data.status) == ("ledger.transfer.pending", "pending")
        assert pending_data.posted_amount == 0
        assert (posted_type, posted_data.status) == ("ledger.transfer.posted", "posted")
        assert posted_data.posted_amount == 60

    def test_a_replay_reports_the_transfer_as_it_was_then(self) -> None:
        posting = _posting()
        posting.apply_group([_create("p", 100, pending=True)], atomic=False)
        (replay,) = posting.apply_group([_create("p", 100, pending=True)], atomic=False)
        posting.apply_group([VoidPending("p")], atomic=False)

        assert isinstance(replay, Outcome)
        assert replay.created is False
        assert replay.transfer.status == "pending"
        assert posting.transfers["p"].status == "voided"
