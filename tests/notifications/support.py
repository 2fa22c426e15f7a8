"""A notifications platform as a client meets it: identity, ledger, wallets, notifications
and audit served by uvicorn on a loopback port, every request through the gateway with
identity's own tokens (customers who register and sign in, staff users, a `service`
client); mail goes to the service's own aiosmtpd catcher on loopback, SMS and push to the
simulators the platform serves at /_simulators over real HTTP, and the SMS simulator's
signed status callbacks come back through the gateway."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from paymesh.kernel.config import Settings
from paymesh.notifications.models import Notification
from paymesh.notifications.simulators import MailCatcher, PushSimulator, SmsSimulator
from paymesh.platform import Platform
from tests import tokens
from tests.conftest import _drop_schemas
from tests.profiles.support import loopback_socket, serving, url_of

SERVICES = ["identity", "ledger", "wallets", "notifications", "audit"]
PASSWORD = "plum-orbit-candle-42"
_numbers = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_numbers)}"


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 10.0) -> Any:
    """The first truthy answer of `check`, polled until `seconds` pass."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        answer = await check()
        if answer:
            return answer
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {seconds} s: {check.__name__}")
        await asyncio.sleep(0.05)


@dataclass
class Customer:
    id: str
    username: str
    email: str
    phone: str | None
    headers: dict[str, str]


@dataclass
class NotificationsWorld:
    platform: Platform
    http: httpx.AsyncClient
    service: dict[str, str] = field(default_factory=dict)
    staff: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def runtime(self) -> Any:
        return self.platform.runtimes["notifications"]

    @property
    def catcher(self) -> MailCatcher:
        catcher: MailCatcher = self.runtime.state["mail_catcher"]
        return catcher

    @property
    def sms(self) -> SmsSimulator:
        simulator: SmsSimulator = self.platform.root.state.sms_simulator
        return simulator

    @property
    def push(self) -> PushSimulator:
        simulator: PushSimulator = self.platform.root.state.push_simulator
        return simulator

    async def password_token(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        return await tokens.password_token(self.http, username, password)

    async def customer(self, *, phone: str | None = "+14155550123") -> Customer:
        username = unique("cust")
        email = f"{username}@example.org"
        body: dict[str, Any] = {"username": username, "password": PASSWORD, "email": email}
        if phone is not None:
            body["phone"] = phone
        registered = await self.http.post("/v1/identity/users", json=body)
        assert registered.status_code == 201, registered.text
        headers = await self.password_token(username)
        return Customer(registered.json()["id"], username, email, phone, headers)

    async def notifications(self, user_id: str, **where: Any) -> list[Notification]:
        async with self.runtime.database.transaction() as session:
            query = select(Notification).where(Notification.user_id == user_id)
            for name, value in where.items():
                query = query.where(getattr(Notification, name) == value)
            return list((await session.execute(query.order_by(Notification.created_at))).scalars())

    async def settled(
        self, user_id: str, count: int, statuses: frozenset[str] = frozenset({"sent", "delivered"})
    ) -> list[Notification]:
        """Wait until the user has `count` messages, all in one of `statuses`."""

        async def done() -> list[Notification] | None:
            rows = await self.notifications(user_id)
            if len(rows) == count and all(row.status in statuses for row in rows):
                return rows
            return None

        result: list[Notification] = await eventually(done)
        return result

    def mail_to(self, address: str) -> list[Any]:
        return [mail for mail in self.catcher.messages if address in mail.recipients]

    def sms_to(self, number: str) -> list[dict[str, Any]]:
        return [message for message in self.sms.messages if message["to"] == number]


def notifications_settings(base: Settings, origin: str) -> Settings:
    section = base.notifications.model_copy(
        update={"retry_initial_seconds": 0.05, "retry_max_seconds": 0.2, "max_attempts": 3}
    )
    return base.model_copy(update={"public_url": origin, "notifications": section})


async def notifications_world(
    settings: Settings, postgres_database: str | None
) -> AsyncIterator[NotificationsWorld]:
    sock = loopback_socket()
    origin = url_of(sock)
    platform = Platform(notifications_settings(settings, origin), SERVICES)
    if postgres_database:
        await _drop_schemas(postgres_database, SERVICES)
    await platform.migrate()
    await platform.start()
    try:
        identity = platform.runtimes["identity"]
        assert identity.spec.seed_demo is not None
        await identity.spec.seed_demo(identity)  # the legacy client (password grant)
        async with (
            serving(platform, sock),
            httpx.AsyncClient(base_url=origin, timeout=30) as http,
        ):
            world = NotificationsWorld(platform, http)
            world.service = await tokens.service_token(platform, world.http)
            world.staff = await tokens.staff_tokens(
                platform, world.http, ("ops", "admin", "finance", "auditor"), unique
            )
            yield world
    finally:
        await platform.stop()
        if postgres_database:
            await _drop_schemas(postgres_database, SERVICES)
