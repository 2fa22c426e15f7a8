"""A risk decision batch killed before it commits: the platform (`paymesh up --demo`, a
real process) kills itself (SIGKILL) once a group commit has written two or more
decisions and not yet committed them (`PAYMESH_RISK_CRASH_AT=decisions_batch_written`).

Started again on the same database: every decision that was answered is stored; none of
the killed batch's is (the batch is one transaction: all or nothing); the customer's hourly
velocity totals equal their activity rows summed; and sending every transaction again
counts each exactly once.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from paymesh.kernel.auth import DevelopmentTokens
from paymesh.kernel.config import Settings
from paymesh.kernel.db import Database, resolve_database_url
from paymesh.risk.models import Activity, Decision, VelocityHour
from tests.payments.crash_support import Api, PaymeshUp, api, server
from tests.tokens import jwt_claims

__all__ = ["api", "server"]  # fixtures

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CONCURRENT = 24
STEP = "decisions_batch_written"


def body(customer_id: str, transaction_id: str, amount: int) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "type": "p2p",
        "amount": amount,
        "currency": "USD",
        "counterparty": {"name": "Maria Lopez", "country": "ES"},
    }


async def send_at_once(
    server: PaymeshUp, headers: dict[str, str], bodies: list[dict[str, Any]]
) -> list[httpx.Response | Exception]:
    """Every evaluation at the same time (the fast path: no Idempotency-Key); a request the
    dying process never answered comes back as its transport error."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        return await asyncio.gather(
            *(http.post("/v1/risk/evaluate", json=one, headers=headers) for one in bodies),
            return_exceptions=True,
        )


async def stored(server: PaymeshUp, database_url: str | None, customer_id: str) -> dict[str, Any]:
    """What risk's database holds for the customer (read with the service's own tables)."""
    settings = Settings(
        _env_file=None, env="test", data_dir=server.directory / "var", database_url=database_url
    )
    url, schema = resolve_database_url(settings, "risk")
    database = Database("risk", url, schema, pool_size=1)
    try:
        async with database.transaction() as session:
            decisions = set(
                (
                    await session.execute(
                        select(Decision.id).where(Decision.customer_id == customer_id)
                    )
                ).scalars()
            )
            transactions = set(
                (
                    await session.execute(
                        select(Activity.transaction_id).where(
                            Activity.customer_id == customer_id, Activity.voided.is_(False)
                        )
                    )
                ).scalars()
            )
            activity = (
                await session.execute(
                    select(func.count(), func.coalesce(func.sum(Activity.amount_usd), 0)).where(
                        Activity.customer_id == customer_id, Activity.voided.is_(False)
                    )
                )
            ).one()
            hours = (
                await session.execute(
                    select(
                        func.coalesce(func.sum(VelocityHour.transactions), 0),
                        func.coalesce(func.sum(VelocityHour.amount_usd), 0),
                    ).where(VelocityHour.customer_id == customer_id)
                )
            ).one()
    finally:
        await database.dispose()
    return {
        "decisions": decisions,
        "transactions": transactions,
        "activity": (int(activity[0]), int(activity[1])),
        "hours": (int(hours[0]), int(hours[1])),
    }


class TestDecisionBatchKilledBeforeCommit:
    def test_answered_decisions_survive_and_the_killed_batch_left_nothing(
        self, server: PaymeshUp, api: Api, postgres_database: str | None
    ) -> None:
        service = DevelopmentTokens(server.signing_secret, "paymesh", "paymesh").issue(
            "risk-crash-test", roles=["service"]
        )
        headers = {"authorization": f"Bearer {service}"}
        server.start(PAYMESH_RISK_CRASH_AT=STEP)
        alice = str(
            jwt_claims(api.sign_in("alice")["authorization"].removeprefix("Bearer "))["sub"]
        )
        run = secrets.token_hex(4)
        bodies = [body(alice, f"pay_{run}_{number}", 100 + number) for number in range(CONCURRENT)]

        answers = asyncio.run(send_at_once(server, headers, bodies))
        server.wait_until_killed(STEP, event="risk_crash_injected")

        answered = {
            one["transaction_id"]: answer.json()["decision_id"]
            for one, answer in zip(bodies, answers, strict=True)
            if isinstance(answer, httpx.Response) and answer.status_code == 200
        }
        assert all(
            isinstance(answer, httpx.TransportError)
            or (isinstance(answer, httpx.Response) and answer.status_code == 200)
            for answer in answers
        ), answers
        (injected,) = server.logged("risk_crash_injected")
        killed = set(injected["decisions"])
        assert len(killed) >= 2, injected
        assert not killed & set(answered.values())
        assert len(answered) < CONCURRENT  # the killed batch's callers got no answer

        server.start()
        before = asyncio.run(stored(server, postgres_database, alice))
        assert set(answered.values()) <= before["decisions"]
        assert not killed & before["decisions"]
        assert before["hours"] == before["activity"]

        # Every transaction again (answered, killed or never run): each counts once.
        again = asyncio.run(send_at_once(server, headers, bodies))
        assert all(
            isinstance(answer, httpx.Response) and answer.status_code == 200 for answer in again
        ), again
        after = asyncio.run(stored(server, postgres_database, alice))
        assert after["hours"] == after["activity"]
        assert {one["transaction_id"] for one in bodies} <= after["transactions"]
        assert after["activity"][0] == len(after["transactions"])
        (probe,) = asyncio.run(send_at_once(server, headers, [body(alice, f"pay_{run}_x", 1)]))
        assert isinstance(probe, httpx.Response) and probe.status_code == 200, probe
        decision = api.http.get(
            f"/v1/risk/decisions/{probe.json()['decision_id']}", headers=headers
        )
        assert decision.status_code == 200, decision.text
        # The velocity the next decision saw: every transaction of the run exactly once.
        assert decision.json()["facts"]["transactions_24h"] == len(after["transactions"])
