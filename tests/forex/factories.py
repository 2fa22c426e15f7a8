"""Small helpers for forex tests: callers, quotes, outbox reads."""

from __future__ import annotations

from typing import Any

import httpx

from paymesh.forex.rates import RateBook
from paymesh.forex.service import ForexService
from paymesh.platform import Platform
from tests.identity import factories as identity

PAYMENTS = "service-payments"


def bearer(platform: Platform, subject: str = "alice", *roles: str) -> dict[str, str]:
    """A development token (service and operator callers; customers in simple cases)."""
    token = platform.tokens.issue(subject, roles=roles or ("customer",), client_id=subject)
    return {"authorization": f"Bearer {token}"}


def service_caller(platform: Platform) -> dict[str, str]:
    return bearer(platform, PAYMENTS, "service")


def rate_book(platform: Platform) -> RateBook:
    book: RateBook = platform.runtimes["forex"].state["rates"]
    return book


def forex_service(platform: Platform) -> ForexService:
    service: ForexService = platform.runtimes["forex"].state["forex"]
    return service


def advance_clock(platform: Platform, seconds: float) -> None:
    """Move the forex service's clock (rate ages, quote expiry) forward."""
    book = rate_book(platform)
    previous = book.clock
    book.clock = lambda: previous() + seconds


async def quote(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    source: str = "USD",
    target: str = "EUR",
    amount: int = 10_000,
    side: str = "sell",
) -> dict[str, Any]:
    response = await http.post(
        "/v1/forex/quotes",
        json={"from": source, "to": target, "amount": amount, "side": side},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def outbox_events(platform: Platform, event_type: str) -> list[dict[str, Any]]:
    runtime = platform.runtimes["forex"]
    table = runtime.spec.tables.outbox
    async with runtime.database.transaction() as session:
        rows = await session.execute(
            table.select().where(table.c.type == event_type).order_by(table.c.created_at)
        )
        return [row.envelope for row in rows]


async def identity_token(platform: Platform, http: httpx.AsyncClient, username: str) -> str:
    """A real identity access token for a new customer (password grant of a legacy app)."""
    await identity.create_user(platform, username, roles=["customer"])
    app = await identity.create_client(
        platform,
        public=False,
        grant_types=["password"],
        password_grant_allowed=True,
        redirect_uris=[],
        scopes=["openid"],
    )
    assert app.client_secret is not None
    response = await http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": username, "password": identity.PASSWORD},
        auth=(app.client_id, app.client_secret),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token
