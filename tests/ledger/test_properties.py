"""Property tests: random operation sequences against an independent model (tests/ledger/model.py).

(a) `Posting` directly, driven the way the engine drives it: every step loads the stored
    state afresh, applies several groups (atomic or not) in one Posting as a group commit
    does, then "writes" what the Posting says must be written into a dict-backed store.
(b) The HTTP API on the real database, with fewer examples.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paymesh.ledger import errors
from paymesh.ledger.posting import (
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountState,
    CreateTransfer,
    ExpirePending,
    Operation,
    Outcome,
    Posting,
    PostPending,
    Result,
    TransferState,
    VoidPending,
)
from tests.ledger.factories import (
    assert_status,
    balances,
    batch,
    create_account,
    currency_totals,
    post_pending,
    post_transfer,
    transfer_body,
    trial_balance,
    unique_id,
    void_pending,
)
from tests.ledger.model import (
    CREDITS_LIMITED,
    DEBITS_LIMITED,
    MAX,
    Create,
    Expire,
    Model,
    ModelAccount,
    ModelResult,
    Op,
    Post,
    Void,
)

EPOCH = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
CURRENCIES = ("USD", "EUR")
FLAG_BITS = {None: 0, DEBITS_LIMITED: DEBITS_MUST_NOT_EXCEED_CREDITS}
FLAG_BITS[CREDITS_LIMITED] = CREDITS_MUST_NOT_EXCEED_DEBITS

# -- strategies --------------------------------------------------------------------------

amounts = st.one_of(
    st.integers(1, 100),
    st.integers(1, 100),
    st.integers(1, 1_000),
    st.integers(-2, 0),
    st.integers(MAX - 2_000, MAX),
    st.integers(2**61, 2**62),
)
TRANSFER_IDS = tuple(f"t{number}" for number in range(8))
transfer_ids = st.sampled_from(TRANSFER_IDS)
BANKS = {currency: f"bank_{currency}" for currency in CURRENCIES}
"""Unguarded accounts, one per currency, that fund the others' opening balances."""

Accounts = dict[str, tuple[str, str | None]]


@st.composite
def account_sets(draw: st.DrawFn) -> Accounts:
    count = draw(st.integers(2, 4))
    accounts: Accounts = {
        f"a{number}": (
            draw(st.sampled_from(["USD", "USD", "EUR"])),
            draw(st.sampled_from([None, DEBITS_LIMITED, DEBITS_LIMITED, CREDITS_LIMITED])),
        )
        for number in range(count)
    }
    return {**accounts, **{bank: (currency, None) for currency, bank in BANKS.items()}}


@st.composite
def opening_balances(draw: st.DrawFn, accounts: Accounts) -> list[Create]:
    """Credits from the banks, so guarded accounts have something to spend."""
    return [
        Create(f"open_{name}", BANKS[currency], name, draw(st.integers(50, 300)), currency)
        for name, (currency, _flag) in accounts.items()
        if name not in BANKS.values() and draw(st.sampled_from([True, True, True, False]))
    ]


@st.composite
def templates(draw: st.DrawFn, accounts: Accounts) -> dict[str, Create]:
    """One transfer per id, mostly valid; creates repeat it as is (a replay) or changed."""
    names = sorted(accounts)
    chosen = {}
    for transfer_id in TRANSFER_IDS:
        guarded = [name for name in names if accounts[name][1] == DEBITS_LIMITED]
        debit = draw(st.sampled_from([*names * 2, *guarded * 4, "missing"]))
        own = accounts.get(debit, ("USD", None))[0]
        alike = [name for name in names if name != debit and accounts[name][0] == own]
        others = [name for name in names if name != debit]
        credit = draw(st.sampled_from([*alike * 8, *others, debit]))
        pending = draw(st.booleans())
        timeouts = [None, None, 1, 2, 4] if pending else [None] * 9 + [3]
        chosen[transfer_id] = Create(
            id=transfer_id,
            debit=debit,
            credit=credit,
            amount=draw(st.one_of(st.integers(1, 100), st.integers(1, 100), amounts)),
            currency=draw(st.sampled_from([own] * 9 + [next(c for c in CURRENCIES if c != own)])),
            pending=pending,
            timeout=draw(st.sampled_from(timeouts)),
            code=draw(st.sampled_from([0, 0, 0, 1])),
            note=draw(st.sampled_from([None, None, "x"])),
        )
    return chosen


def creates(chosen: dict[str, Create]) -> st.SearchStrategy[Create]:
    variations = {
        "amount": lambda op: replace(op, amount=op.amount + 1),
        "code": lambda op: replace(op, code=op.code + 1),
        "note": lambda op: replace(op, note=None if op.note else "y"),
        "pending": lambda op: replace(op, pending=not op.pending, timeout=None),
        "accounts": lambda op: replace(op, debit=op.credit, credit=op.debit),
    }
    return st.builds(
        lambda transfer_id, change: (
            variations[change](chosen[transfer_id]) if change in variations else chosen[transfer_id]
        ),
        transfer_ids,
        st.sampled_from(["same", "same", "same", "same", *variations]),
    )


def operations(chosen: dict[str, Create]) -> st.SearchStrategy[Op]:
    return st.one_of(
        creates(chosen),
        creates(chosen),
        st.builds(Post, id=transfer_ids, amount=st.one_of(st.none(), amounts)),
        st.builds(Void, id=transfer_ids),
        st.builds(Expire, id=transfer_ids),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Accounts, list[Any]]:
    """Accounts, then steps: (seconds to advance, [(atomic, [ops])]) one commit each."""
    accounts = draw(account_sets())
    groups = st.tuples(
        st.booleans(), st.lists(operations(draw(templates(accounts))), min_size=1, max_size=5)
    )
    steps = draw(
        st.lists(
            st.tuples(st.sampled_from([0, 0, 1, 2, 5]), st.lists(groups, min_size=1, max_size=4)),
            min_size=1,
            max_size=10,
        )
    )
    return accounts, [(0, [(False, draw(opening_balances(accounts)))]), *steps]


@st.composite
def guarded_scenarios(draw: st.DrawFn) -> tuple[Accounts, list[Any]]:
    """One funded guarded wallet that many pending and posted debits compete for."""
    accounts: Accounts = {"g": ("USD", DEBITS_LIMITED), "m": ("USD", None)}
    accounts["bank_USD"] = ("USD", None)
    chosen = {
        transfer_id: Create(
            transfer_id,
            "g" if draw(st.integers(0, 4)) else "m",
            "m",
            draw(st.integers(1, 120)),
            "USD",
            pending=draw(st.booleans()),
        )
        for transfer_id in TRANSFER_IDS
    }
    chosen = {
        key: op if op.debit == "g" else replace(op, debit="m", credit="g")
        for key, op in chosen.items()
    }
    groups = st.tuples(st.booleans(), st.lists(operations(chosen), min_size=1, max_size=4))
    steps = draw(st.lists(st.tuples(st.just(0), st.lists(groups, max_size=3)), max_size=8))
    opening = Create("open_g", "bank_USD", "g", draw(st.integers(50, 300)), "USD")
    return accounts, [(0, [(False, [opening])]), *steps]


# -- the store the Posting's output is written to -----------------------------------------


@dataclass
class Store:
    """What the database would hold if the writer wrote exactly what the Posting recorded."""

    accounts: dict[str, AccountState]
    transfers: dict[str, TransferState] = field(default_factory=dict)
    last_entry: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    events: list[tuple[str, str, str, int]] = field(default_factory=list)

    def load(self, now: dt.datetime) -> Posting:
        """A fresh Posting over copies of the stored rows, as the engine locks and loads them."""
        return Posting(
            {key: replace(value) for key, value in self.accounts.items()},
            {key: replace(value) for key, value in self.transfers.items()},
            now,
        )

    def write(self, posting: Posting) -> None:
        for key in posting.dirty_accounts:
            self.accounts[key] = replace(posting.accounts[key])
        for key, transfer in posting.new_transfers.items():
            assert key not in self.transfers, f"{key} inserted twice (a unique violation)"
            self.transfers[key] = replace(transfer)
        for key, transfer in posting.resolved_transfers.items():
            if key in posting.new_transfers:
                continue
            stored = self.transfers[key]
            stored.status = transfer.status
            stored.posted_amount = transfer.posted_amount
            stored.resolved_at = transfer.resolved_at
        for entry in posting.entries:
            self.last_entry[entry["account_id"]] = (
                entry["debits_pending"],
                entry["debits_posted"],
                entry["credits_pending"],
                entry["credits_posted"],
            )
        self.events.extend(
            (event_type, transfer.id, transfer.status, transfer.posted_amount)
            for event_type, transfer in posting.events
        )


def metadata_of(op: Create) -> dict[str, Any]:
    return {} if op.note is None else {"note": op.note}


def to_operation(op: Op) -> Operation:
    if isinstance(op, Create):
        return CreateTransfer(
            id=op.id,
            debit_account_id=op.debit,
            credit_account_id=op.credit,
            amount=op.amount,
            currency=op.currency,
            code=op.code,
            pending=op.pending,
            timeout_seconds=op.timeout,
            metadata=metadata_of(op),
        )
    if isinstance(op, Post):
        return PostPending(op.id, op.amount)
    if isinstance(op, Void):
        return VoidPending(op.id)
    return ExpirePending(op.id)


def as_model_result(result: Result) -> ModelResult:
    if isinstance(result, errors.LedgerError):
        return ("error", result.code)
    assert isinstance(result, Outcome)
    return ("ok", result.created, result.transfer.status)


def balances_of(account: AccountState) -> tuple[int, int, int, int]:
    return (
        account.debits_pending,
        account.debits_posted,
        account.credits_pending,
        account.credits_posted,
    )


def check_invariants(store: Store, model: Model) -> None:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for key, account in store.accounts.items():
        values = balances_of(account)
        assert all(0 <= value <= MAX for value in values), (key, values)
        assert values == model.accounts[key].balances(), key
        if account.flags & DEBITS_MUST_NOT_EXCEED_CREDITS:
            assert account.debits_pending + account.debits_posted <= account.credits_posted
        if account.flags & CREDITS_MUST_NOT_EXCEED_DEBITS:
            assert account.credits_pending + account.credits_posted <= account.debits_posted
        if key in store.last_entry:
            assert store.last_entry[key] == values, key
        else:
            assert values == (0, 0, 0, 0), key
        for index, value in enumerate(values):
            totals[account.currency][index] += value
    for currency, (
        debits_pending,
        debits_posted,
        credits_pending,
        credits_posted,
    ) in totals.items():
        assert debits_posted == credits_posted, currency
        assert debits_pending == credits_pending, currency
    # Balances are exactly explained by the stored transfers.
    explained: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for transfer in store.transfers.values():
        mine = model.transfers[transfer.id]
        assert (transfer.status, transfer.posted_amount) == (mine.status, mine.posted_amount)
        if transfer.status == "pending":
            explained[transfer.debit_account_id][0] += transfer.amount
            explained[transfer.credit_account_id][2] += transfer.amount
        elif transfer.status == "posted":
            explained[transfer.debit_account_id][1] += transfer.posted_amount
            explained[transfer.credit_account_id][3] += transfer.posted_amount
    assert set(store.transfers) == set(model.transfers)
    for key, account in store.accounts.items():
        assert list(balances_of(account)) == explained[key], key


def run_scenario(accounts: Accounts, steps: list[Any]) -> None:
    store = Store(
        {
            key: AccountState(key, currency, FLAG_BITS[flag], 0, 0, 0, 0)
            for key, (currency, flag) in accounts.items()
        }
    )
    model = Model()
    for key, (currency, flag) in accounts.items():
        model.accounts[key] = ModelAccount(currency, flag)
    clock = 0
    for advance, groups in steps:
        clock += advance
        posting = store.load(EPOCH + dt.timedelta(seconds=clock))
        outcomes = [
            (posting.apply_group([to_operation(op) for op in ops], atomic), atomic, ops)
            for atomic, ops in groups
        ]
        store.write(posting)
        # Read the outcomes only after the whole commit, as the engine does when it answers.
        for results, atomic, ops in outcomes:
            wanted = model.group(ops, atomic, clock)
            assert [as_model_result(result) for result in results] == wanted, (atomic, ops)
        assert store.events == model.events
        check_invariants(store, model)


class TestPostingAgainstModel:
    @settings(max_examples=300, deadline=None)
    @given(scenario=scenarios())
    def test_random_operations_agree_with_the_model(
        self, scenario: tuple[Accounts, list[Any]]
    ) -> None:
        run_scenario(*scenario)

    @settings(max_examples=200, deadline=None)
    @given(scenario=guarded_scenarios())
    def test_a_contended_guarded_account_agrees_with_the_model(
        self, scenario: tuple[Accounts, list[Any]]
    ) -> None:
        run_scenario(*scenario)


# -- (b) through HTTP on the real database -----------------------------------------------

http_amounts = st.one_of(
    st.integers(1, 100), st.integers(1, 1_000), st.integers(1, 10**12), st.integers(-1, 0)
)


@st.composite
def http_actions(draw: st.DrawFn) -> tuple[Accounts, list[Any]]:
    """Accounts, then single creates, posts, voids and batches (atomic or not)."""
    accounts = draw(account_sets())
    # No timeouts (the clock is real here) and amounts whose sums stay within 64 bits.
    chosen = {
        key: replace(op, timeout=None, amount=draw(http_amounts))
        for key, op in draw(templates(accounts)).items()
    }
    create = creates(chosen)
    action = st.one_of(
        st.tuples(st.just("create"), create),
        st.tuples(st.just("create"), create),
        st.tuples(st.just("post"), st.builds(Post, transfer_ids, st.none() | http_amounts)),
        st.tuples(st.just("void"), st.builds(Void, transfer_ids)),
        st.tuples(st.just("batch"), st.booleans(), st.lists(create, min_size=1, max_size=4)),
    )
    opening = draw(opening_balances(accounts))
    actions = draw(st.lists(action, min_size=1, max_size=15))
    return accounts, [("batch", False, opening), *actions] if opening else actions


class Names:
    """Model names (a0, t1) to ids no other example has used."""

    def __init__(self) -> None:
        self.prefix = unique_id("p")

    def __call__(self, name: str) -> str:
        return f"{self.prefix}_{name}"


def _create_body(op: Create, names: Names) -> dict[str, Any]:
    return transfer_body(
        names(op.debit),
        names(op.credit),
        op.amount,
        id=names(op.id),
        currency=op.currency,
        code=op.code,
        pending=op.pending,
        metadata=metadata_of(op),
    )


def _check_single(response: httpx.Response, wanted: ModelResult, created_status: int) -> None:
    if wanted[0] == "error":
        assert response.status_code in (404, 409, 422), response.text
        assert response.json()["code"] == wanted[1], response.text
        return
    body = assert_status(response, created_status if wanted[1] else 200)
    assert body["status"] == wanted[2], body


def _batch_result(wanted: ModelResult) -> tuple[str, str | None]:
    if wanted[0] == "error":
        return ("failed", wanted[1])
    return ("created" if wanted[1] else "exists", None)


async def _apply_action(
    client: httpx.AsyncClient, model: Model, names: Names, action: tuple[Any, ...]
) -> None:
    kind = action[0]
    if kind == "create":
        op: Create = action[1]
        wanted = model.group([op], atomic=False, now=0)[0]
        _check_single(await post_transfer(client, _create_body(op, names)), wanted, 201)
    elif kind == "post":
        wanted = model.group([action[1]], atomic=False, now=0)[0]
        response = await post_pending(client, names(action[1].id), action[1].amount)
        _check_single(response, wanted, 200)
    elif kind == "void":
        wanted = model.group([action[1]], atomic=False, now=0)[0]
        _check_single(await void_pending(client, names(action[1].id)), wanted, 200)
    else:
        atomic, ops = action[1], action[2]
        wanted_all = model.group(ops, atomic=atomic, now=0)
        response = await batch(client, [_create_body(op, names) for op in ops], atomic=atomic)
        got = [(item["status"], item["code"]) for item in assert_status(response, 200)["results"]]
        assert got == [_batch_result(wanted) for wanted in wanted_all], (atomic, ops)


class TestHttpAgainstModel:
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(scenario=http_actions())
    async def test_random_requests_agree_with_the_model(
        self,
        ledger: httpx.AsyncClient,
        scenario: tuple[Accounts, list[Any]],
    ) -> None:
        accounts, actions = scenario
        names = Names()  # the database outlives one example: every example has its own ids
        model = Model()
        before = await trial_balance(ledger)
        for name, (currency, flag) in accounts.items():
            flags = () if flag is None else (flag,)
            await create_account(ledger, id=names(name), currency=currency, flags=flags)
            model.accounts[name] = ModelAccount(currency, flag)

        for action in actions:
            await _apply_action(ledger, model, names, action)

        for name, account in model.accounts.items():
            got = await balances(ledger, names(name))
            assert tuple(got.values()) == account.balances(), name
        after = await trial_balance(ledger)
        assert after["balanced"] is True, after
        for currency in CURRENCIES:
            grown = currency_totals(after, currency)
            start = currency_totals(before, currency)
            delta = tuple(
                grown[key] - start[key]
                for key in ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
            )
            assert delta == model.totals(currency), currency
