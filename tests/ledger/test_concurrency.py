"""Concurrent requests: no overdraft, no lost update, no double apply, no deadlock.

On PostgreSQL some tests also run a second ledger process against the same database: a
second `Platform` (its own database pool and group-commit engine, not migrated again),
like another `paymesh serve ledger` replica.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from tests.ledger.factories import (
    DEBITS_LIMITED,
    account_body,
    assert_trial_balanced,
    balance_of,
    balances,
    client_for,
    collect_pages,
    create_account,
    fund,
    post_pending,
    post_transfer,
    transfer,
    transfer_body,
    unique_id,
    void_pending,
)
from tests.ledger.test_events import outbox_events

pytestmark = pytest.mark.serial

ONE_PROCESS = pytest.param(1, id="one-process")
TWO_PROCESSES = pytest.param(2, id="two-processes", marks=pytest.mark.postgres_only)


@pytest.fixture
async def clients(
    request: pytest.FixtureRequest,
    ledger_platform: Platform,
    ledger: httpx.AsyncClient,
    settings: Settings,
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per ledger process; requests are spread over them round-robin."""
    processes: int = request.param
    if processes == 1:
        yield [ledger]
        return
    replica = Platform(settings, ["ledger"], run_workers=False)  # same database and schema
    await replica.start()
    try:
        async with client_for(replica) as other:
            yield [ledger, other]
    finally:
        await replica.stop()


async def _spread(
    clients: list[httpx.AsyncClient], bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    return await asyncio.gather(
        *(post_transfer(clients[n % len(clients)], body) for n, body in enumerate(bodies))
    )


def _outcomes(responses: list[httpx.Response]) -> Counter[tuple[int, str | None]]:
    return Counter(
        (response.status_code, response.json().get("code") if response.status_code >= 400 else None)
        for response in responses
    )


@pytest.mark.parametrize("clients", [ONE_PROCESS, TWO_PROCESSES], indirect=True)
class TestConcurrentDebits:
    async def test_exactly_the_covered_debits_succeed(
        self, ledger: httpx.AsyncClient, clients: list[httpx.AsyncClient]
    ) -> None:
        wallet = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        sink = (await create_account(ledger))["id"]
        await fund(ledger, wallet, 50 * 7)
        bodies = [transfer_body(wallet, sink, 7) for _ in range(200)]

        responses = await _spread(clients, bodies)

        assert _outcomes(responses) == {(201, None): 50, (409, "exceeds_credits"): 150}
        assert await balances(ledger, wallet) == balance_of(debits_posted=350, credits_posted=350)
        assert await balances(ledger, sink) == balance_of(credits_posted=350)
        await assert_trial_balanced(ledger)
        pages = await collect_pages(ledger, f"/v1/ledger/accounts/{wallet}/entries", {}, limit=100)
        statement = [entry for page in pages for entry in page]
        assert len(statement) == 51
        assert [entry["balance_posted"] for entry in statement] == [350 - 7 * n for n in range(51)]

    async def test_pending_reservations_count_against_the_same_funds(
        self, ledger: httpx.AsyncClient, clients: list[httpx.AsyncClient]
    ) -> None:
        wallet = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        sink = (await create_account(ledger))["id"]
        await fund(ledger, wallet, 30 * 5)
        bodies = [transfer_body(wallet, sink, 5, pending=bool(n % 2)) for n in range(100)]

        responses = await _spread(clients, bodies)

        assert _outcomes(responses) == {(201, None): 30, (409, "exceeds_credits"): 70}
        wallet_now = await balances(ledger, wallet)
        assert wallet_now["debits_pending"] + wallet_now["debits_posted"] == 150
        await assert_trial_balanced(ledger)


@pytest.mark.parametrize("clients", [ONE_PROCESS, TWO_PROCESSES], indirect=True)
class TestConcurrentOppositeTransfers:
    async def test_never_deadlock_and_totals_are_right(
        self, ledger: httpx.AsyncClient, clients: list[httpx.AsyncClient]
    ) -> None:
        alice = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        bob = (await create_account(ledger, flags=DEBITS_LIMITED))["id"]
        await fund(ledger, alice, 1_000)
        await fund(ledger, bob, 1_000)
        bodies = [
            transfer_body(alice, bob, 7) if n % 2 else transfer_body(bob, alice, 5)
            for n in range(200)
        ]

        responses = await asyncio.wait_for(_spread(clients, bodies), timeout=60)

        assert _outcomes(responses) == {(201, None): 200}
        assert await balances(ledger, alice) == balance_of(debits_posted=700, credits_posted=1_500)
        assert await balances(ledger, bob) == balance_of(debits_posted=500, credits_posted=1_700)
        await assert_trial_balanced(ledger)

    async def test_a_ring_of_accounts_never_deadlocks(
        self, ledger: httpx.AsyncClient, clients: list[httpx.AsyncClient]
    ) -> None:
        ring = [(await create_account(ledger))["id"] for _ in range(5)]
        bodies = [transfer_body(ring[n % 5], ring[(n + 1) % 5], 1 + n % 3) for n in range(150)]

        responses = await asyncio.wait_for(_spread(clients, bodies), timeout=60)

        assert _outcomes(responses) == {(201, None): 150}
        trial = await assert_trial_balanced(ledger)
        assert trial["currencies"][0]["debits_posted"] == sum(1 + n % 3 for n in range(150))


@pytest.mark.parametrize("clients", [ONE_PROCESS, TWO_PROCESSES], indirect=True)
class TestConcurrentReplays:
    async def test_the_same_transfer_id_applies_once(
        self,
        ledger_platform: Platform,
        ledger: httpx.AsyncClient,
        clients: list[httpx.AsyncClient],
    ) -> None:
        debit = (await create_account(ledger))["id"]
        credit = (await create_account(ledger))["id"]
        body = transfer_body(debit, credit, 250)

        responses = await _spread(clients, [body] * 20)

        assert _outcomes(responses) == {(201, None): 1, (200, None): 19}
        assert len({response.content for response in responses}) == 1  # the same transfer
        assert await balances(ledger, credit) == balance_of(credits_posted=250)
        assert len(await outbox_events(ledger_platform, body["id"])) == 1

    async def test_a_retry_moments_later_applies_once(
        self, ledger: httpx.AsyncClient, clients: list[httpx.AsyncClient]
    ) -> None:
        """A client retrying while its first attempt is still being written (a timeout, a
        second replica): the retry may reach another writer's transaction."""
        debit = (await create_account(ledger))["id"]
        credit = (await create_account(ledger))["id"]
        for round_number in range(40):
            body = transfer_body(debit, credit, 1)
            delay = 0.0005 * (round_number % 5)

            async def retry(body: dict[str, Any] = body, delay: float = delay) -> httpx.Response:
                await asyncio.sleep(delay)
                return await post_transfer(clients[-1], body)

            responses = await asyncio.gather(post_transfer(clients[0], body), retry())

            statuses = sorted(response.status_code for response in responses)
            assert statuses == [200, 201], [response.text for response in responses]
        assert await balances(ledger, credit) == balance_of(credits_posted=40)

    async def test_the_same_post_and_void_race_once(
        self,
        ledger_platform: Platform,
        ledger: httpx.AsyncClient,
        clients: list[httpx.AsyncClient],
    ) -> None:
        debit = (await create_account(ledger))["id"]
        credit = (await create_account(ledger))["id"]
        pending = await transfer(ledger, debit, credit, 90, pending=True)

        responses = await asyncio.gather(
            *(
                post_pending(clients[n % len(clients)], pending["id"], 40)
                if n % 2
                else void_pending(clients[n % len(clients)], pending["id"])
                for n in range(20)
            )
        )

        outcomes = _outcomes(responses)
        posted = await balances(ledger, credit)
        if posted["credits_posted"]:  # the post won: the voids are refused
            assert outcomes == {(200, None): 10, (409, "pending_transfer_already_posted"): 10}
            assert posted == balance_of(credits_posted=40)
        else:  # the void won: the posts are refused
            assert outcomes == {(200, None): 10, (409, "pending_transfer_already_voided"): 10}
            assert posted == balance_of()
        events = await outbox_events(ledger_platform, pending["id"])
        assert len(events) == 2
        await assert_trial_balanced(ledger)


@pytest.mark.parametrize("clients", [ONE_PROCESS, TWO_PROCESSES], indirect=True)
class TestConcurrentAccountCreation:
    async def test_the_same_account_id_is_created_once(
        self,
        ledger_platform: Platform,
        ledger: httpx.AsyncClient,
        clients: list[httpx.AsyncClient],
    ) -> None:
        body = account_body(id=unique_id("acc"), currency="EUR", code=3)

        responses = await asyncio.gather(
            *(clients[n % len(clients)].post("/v1/ledger/accounts", json=body) for n in range(20))
        )

        assert _outcomes(responses) == {(201, None): 1, (200, None): 19}
        assert len({response.content for response in responses}) == 1
        assert len(await outbox_events(ledger_platform, body["id"])) == 1
