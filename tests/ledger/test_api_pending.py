"""Two-phase transfers over HTTP: reserve, post (all or part), void, expire."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.ledger.factories import (
    DEBITS_LIMITED,
    assert_problem,
    assert_status,
    assert_trial_balanced,
    balance_of,
    balances,
    client_for,
    create_account,
    currency_totals,
    fund,
    get_transfer,
    post_pending,
    transfer,
    unique_id,
    void_pending,
)


async def _reserve(
    client: httpx.AsyncClient, amount: int = 100, **options: Any
) -> tuple[str, str, dict[str, Any]]:
    """A funded guarded wallet, a merchant account, and a pending transfer between them."""
    wallet = (await create_account(client, flags=DEBITS_LIMITED))["id"]
    merchant = (await create_account(client))["id"]
    await fund(client, wallet, 1_000)
    pending = await transfer(client, wallet, merchant, amount, pending=True, **options)
    return wallet, merchant, pending


class TestCreatePendingTransfer:
    async def test_reserves_the_amount(self, ledger: httpx.AsyncClient) -> None:
        wallet, merchant, pending = await _reserve(ledger, 300)

        assert pending["status"] == "pending"
        assert pending["pending"] is True
        assert pending["posted_amount"] == 0
        assert pending["resolved_at"] is None
        assert await balances(ledger, wallet) == balance_of(
            debits_pending=300, credits_posted=1_000
        )
        assert await balances(ledger, merchant) == balance_of(credits_pending=300)
        trial = await assert_trial_balanced(ledger)
        usd = currency_totals(trial, "USD")
        assert (usd["debits_pending"], usd["credits_pending"]) == (300, 300)

    async def test_timeout_sets_the_expiry(self, ledger: httpx.AsyncClient) -> None:
        _wallet, _merchant, pending = await _reserve(ledger, timeout_seconds=3600)

        created = dt.datetime.fromisoformat(pending["created_at"])
        expires = dt.datetime.fromisoformat(pending["expires_at"])
        assert pending["timeout_seconds"] == 3600
        assert expires - created == dt.timedelta(seconds=3600)


class TestPostPendingTransfer:
    async def test_posts_the_whole_amount(self, ledger: httpx.AsyncClient) -> None:
        wallet, merchant, pending = await _reserve(ledger, 300)

        response = await post_pending(ledger, pending["id"])

        posted = assert_status(response, 200)
        assert posted["status"] == "posted"
        assert posted["amount"] == 300
        assert posted["posted_amount"] == 300
        assert posted["resolved_at"] is not None
        assert await balances(ledger, wallet) == balance_of(debits_posted=300, credits_posted=1_000)
        assert await balances(ledger, merchant) == balance_of(credits_posted=300)
        assert assert_status(await get_transfer(ledger, pending["id"]), 200) == posted
        await assert_trial_balanced(ledger)

    async def test_posts_part_and_releases_the_rest(self, ledger: httpx.AsyncClient) -> None:
        wallet, merchant, pending = await _reserve(ledger, 1_000)

        response = await post_pending(ledger, pending["id"], 350)

        posted = assert_status(response, 200)
        assert posted["status"] == "posted"
        assert posted["amount"] == 1_000
        assert posted["posted_amount"] == 350
        assert await balances(ledger, wallet) == balance_of(debits_posted=350, credits_posted=1_000)
        assert await balances(ledger, merchant) == balance_of(credits_posted=350)
        await transfer(ledger, wallet, merchant, 650)  # the released 650 is spendable again
        await assert_trial_balanced(ledger)

    async def test_posting_twice_returns_the_same_transfer(self, ledger: httpx.AsyncClient) -> None:
        wallet, merchant, pending = await _reserve(ledger, 400)
        first = assert_status(await post_pending(ledger, pending["id"], 150), 200)

        same_amount = await post_pending(ledger, pending["id"], 150)
        no_amount = await post_pending(ledger, pending["id"])

        assert assert_status(same_amount, 200) == first
        assert assert_status(no_amount, 200) == first
        assert await balances(ledger, wallet) == balance_of(debits_posted=150, credits_posted=1_000)
        assert await balances(ledger, merchant) == balance_of(credits_posted=150)

    async def test_posting_again_with_another_amount_is_a_conflict(
        self, ledger: httpx.AsyncClient
    ) -> None:
        _wallet, merchant, pending = await _reserve(ledger, 400)
        assert_status(await post_pending(ledger, pending["id"], 150), 200)

        response = await post_pending(ledger, pending["id"], 200)

        assert_problem(response, 409, "pending_transfer_already_posted")
        assert await balances(ledger, merchant) == balance_of(credits_posted=150)

    async def test_more_than_pending_is_refused(self, ledger: httpx.AsyncClient) -> None:
        wallet, _merchant, pending = await _reserve(ledger, 100)

        response = await post_pending(ledger, pending["id"], 101)

        assert_problem(response, 422, "exceeds_pending_amount")
        still = assert_status(await get_transfer(ledger, pending["id"]), 200)
        assert still["status"] == "pending"
        assert await balances(ledger, wallet) == balance_of(
            debits_pending=100, credits_posted=1_000
        )

    async def test_amount_must_be_positive(self, ledger: httpx.AsyncClient) -> None:
        wallet, _merchant, pending = await _reserve(ledger, 100)
        for amount in (0, -5):
            response = await post_pending(ledger, pending["id"], amount)

            assert_problem(response, 422, "amount_must_be_positive")
        still = assert_status(await get_transfer(ledger, pending["id"]), 200)
        assert still["status"] == "pending"
        assert await balances(ledger, wallet) == balance_of(
            debits_pending=100, credits_posted=1_000
        )

    async def test_invalid_amount_is_refused(self, ledger: httpx.AsyncClient) -> None:
        _wallet, _merchant, pending = await _reserve(ledger, 100)
        for amount in (1.0, "1", 2**63, [1]):
            response = await ledger.post(
                f"/v1/ledger/transfers/{pending['id']}/post", json={"amount": amount}
            )

            assert_problem(response, 422, "validation_failed")
        still = assert_status(await get_transfer(ledger, pending["id"]), 200)
        assert still["status"] == "pending"

    async def test_after_void_is_a_conflict(self, ledger: httpx.AsyncClient) -> None:
        wallet, _merchant, pending = await _reserve(ledger, 100)
        assert_status(await void_pending(ledger, pending["id"]), 200)

        response = await post_pending(ledger, pending["id"])

        assert_problem(response, 409, "pending_transfer_already_voided")
        assert await balances(ledger, wallet) == balance_of(credits_posted=1_000)

    async def test_a_transfer_posted_directly_is_not_pending(
        self, ledger: httpx.AsyncClient
    ) -> None:
        debit = (await create_account(ledger))["id"]
        credit = (await create_account(ledger))["id"]
        posted = await transfer(ledger, debit, credit, 10)

        post = await post_pending(ledger, posted["id"])
        void = await void_pending(ledger, posted["id"])

        assert_problem(post, 409, "pending_transfer_not_pending")
        assert_problem(void, 409, "pending_transfer_not_pending")
        assert await balances(ledger, credit) == balance_of(credits_posted=10)

    async def test_unknown_transfer_is_not_found(self, ledger: httpx.AsyncClient) -> None:
        response = await post_pending(ledger, unique_id("txf"))

        assert_problem(response, 404, "pending_transfer_not_found")


class TestVoidPendingTransfer:
    async def test_releases_the_reservation(self, ledger: httpx.AsyncClient) -> None:
        wallet, merchant, pending = await _reserve(ledger, 1_000)

        response = await void_pending(ledger, pending["id"])

        voided = assert_status(response, 200)
        assert voided["status"] == "voided"
        assert voided["posted_amount"] == 0
        assert voided["resolved_at"] is not None
        assert await balances(ledger, wallet) == balance_of(credits_posted=1_000)
        assert await balances(ledger, merchant) == balance_of()
        await transfer(ledger, wallet, merchant, 1_000)  # the whole balance is free again
        await assert_trial_balanced(ledger)

    async def test_voiding_twice_returns_the_same_transfer(self, ledger: httpx.AsyncClient) -> None:
        wallet, _merchant, pending = await _reserve(ledger, 100)
        first = assert_status(await void_pending(ledger, pending["id"]), 200)

        again = await void_pending(ledger, pending["id"])

        assert assert_status(again, 200) == first
        assert await balances(ledger, wallet) == balance_of(credits_posted=1_000)

    async def test_after_post_is_a_conflict(self, ledger: httpx.AsyncClient) -> None:
        wallet, _merchant, pending = await _reserve(ledger, 100)
        assert_status(await post_pending(ledger, pending["id"]), 200)

        response = await void_pending(ledger, pending["id"])

        assert_problem(response, 409, "pending_transfer_already_posted")
        assert await balances(ledger, wallet) == balance_of(debits_posted=100, credits_posted=1_000)

    async def test_unknown_transfer_is_not_found(self, ledger: httpx.AsyncClient) -> None:
        response = await void_pending(ledger, unique_id("txf"))

        assert_problem(response, 404, "pending_transfer_not_found")


@pytest.fixture
async def expiring_ledger(expiring_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(expiring_platform) as client:
        yield client


@pytest.fixture
async def ledger_without_workers(
    make_platform: Callable[..., Any],
) -> AsyncIterator[httpx.AsyncClient]:
    """A ledger whose background jobs (expiry included) never run."""
    platform = await make_platform(["ledger"], run_workers=False)
    async with client_for(platform) as client:
        yield client


async def wait_for_status(
    client: httpx.AsyncClient, transfer_id: str, status: str, deadline_seconds: float = 15.0
) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_seconds
    while True:
        current = assert_status(await get_transfer(client, transfer_id), 200)
        if current["status"] == status:
            return current
        assert time.monotonic() < deadline, f"still {current['status']}, wanted {status}"
        await asyncio.sleep(0.1)


class TestExpirePendingTransfer:
    async def test_the_job_expires_it_and_releases_the_reservation(
        self, expiring_ledger: httpx.AsyncClient
    ) -> None:
        client = expiring_ledger
        wallet, merchant, pending = await _reserve(client, 250, timeout_seconds=1)
        kept = await transfer(client, wallet, merchant, 5, pending=True, timeout_seconds=3600)

        expired = await wait_for_status(client, pending["id"], "expired")

        assert expired["posted_amount"] == 0
        assert expired["resolved_at"] is not None
        assert await balances(client, wallet) == balance_of(debits_pending=5, credits_posted=1_000)
        assert await balances(client, merchant) == balance_of(credits_pending=5)
        assert_problem(await post_pending(client, pending["id"]), 409, "pending_transfer_expired")
        assert_problem(await void_pending(client, pending["id"]), 409, "pending_transfer_expired")
        still = assert_status(await get_transfer(client, kept["id"]), 200)
        assert still["status"] == "pending"
        await assert_trial_balanced(client)

    async def test_cannot_be_posted_after_its_timeout_even_before_the_job_runs(
        self, ledger_without_workers: httpx.AsyncClient
    ) -> None:
        client = ledger_without_workers
        wallet, _merchant, pending = await _reserve(client, 250, timeout_seconds=1)
        await asyncio.sleep(1.1)

        response = await post_pending(client, pending["id"])

        assert_problem(response, 409, "pending_transfer_expired")
        assert_problem(await void_pending(client, pending["id"]), 409, "pending_transfer_expired")
        # Nothing expired it yet: the reservation stands until the job releases it.
        assert await balances(client, wallet) == balance_of(
            debits_pending=250, credits_posted=1_000
        )

    async def test_a_resolved_transfer_is_left_alone_by_the_job(
        self, expiring_ledger: httpx.AsyncClient
    ) -> None:
        client = expiring_ledger
        # 5 s to resolve both (1 s ran out before the post on a loaded CI machine); the
        # marker, made after, expires later, so once it has expired the job has run past
        # both resolved transfers' timeouts too.
        wallet, merchant, pending = await _reserve(client, 250, timeout_seconds=5)
        voided = await transfer(client, wallet, merchant, 7, pending=True, timeout_seconds=5)
        assert_status(await post_pending(client, pending["id"], 100), 200)
        assert_status(await void_pending(client, voided["id"]), 200)
        marker = await transfer(client, wallet, merchant, 1, pending=True, timeout_seconds=6)

        await wait_for_status(client, marker["id"], "expired")  # the job has run since

        posted = assert_status(await get_transfer(client, pending["id"]), 200)
        assert (posted["status"], posted["posted_amount"]) == ("posted", 100)
        assert assert_status(await get_transfer(client, voided["id"]), 200)["status"] == "voided"
        assert await balances(client, wallet) == balance_of(debits_posted=100, credits_posted=1_000)
