"""Demo data for `paymesh up --demo`: USD wallets for the demo customers alice and bob
(EUR too for alice), funded by deposits — through this service's own code, so the ledger
shows them as real wallet accounts and deposits. Fixed idempotency keys: seeding again
changes nothing.

The customers are identity's demo users (identity/demo.py). Their ids are found the way an
app would: the documented demo credentials through the legacy client's password grant,
then `sub` from userinfo. Without identity in this process there is nobody to seed for.
"""

from __future__ import annotations

from typing import Any

import structlog

from paymesh.kernel.auth import Caller
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.wallets.operations import Operations
from paymesh.wallets.service import WalletsService

log = structlog.get_logger("paymesh.wallets")

DEMO_PASSWORD = "paymesh-demo-password"  # noqa: S105 - identity's documented demo credential
LEGACY_CLIENT = ("demo-legacy", "demo-legacy-secret")
FUNDING = [
    ("alice", "USD", 250_00),
    ("alice", "EUR", 120_00),
    ("bob", "USD", 80_00),
]
TREASURY = Caller(subject="demo-finance", client_id="demo-finance", roles=frozenset({"finance"}))


async def _user_id(runtime: ServiceRuntime, username: str) -> str | None:
    async with runtime.directory.http("identity") as http:
        token = await http.post(
            "/oauth2/token",
            data={
                "grant_type": "password",
                "username": username,
                "password": DEMO_PASSWORD,
                "scope": "openid",
            },
            auth=LEGACY_CLIENT,
        )
        if token.status_code != 200:
            return None
        access = token.json()["access_token"]
        info = await http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {access}"})
        subject: Any = info.json().get("sub") if info.status_code == 200 else None
        return subject if isinstance(subject, str) else None


async def seed_demo(runtime: ServiceRuntime) -> None:
    """`paymesh up --demo` seeds before the platform starts, when identity cannot sign in
    anyone yet (its keys load on start): then the seeding waits for this service's start
    (`start_demo`), which comes after identity's."""
    if not runtime.state.get("started"):
        runtime.state["demo_pending"] = True
        return
    await _seed(runtime)


async def start_demo(runtime: ServiceRuntime) -> None:
    runtime.state["started"] = True
    if runtime.state.pop("demo_pending", False):
        try:
            await _seed(runtime)
        except Exception:  # the platform still starts; the log says what went wrong
            log.exception("wallets_demo_failed")


async def _seed(runtime: ServiceRuntime) -> None:
    if "identity" not in runtime.directory.local:
        log.info("wallets_demo_skipped", reason="identity is not in this process")
        return
    wallets: WalletsService = runtime.state["wallets"]
    operations: Operations = runtime.state["operations"]
    for username, currency, amount in FUNDING:
        user_id = await _user_id(runtime, username)
        if user_id is None:
            log.warning("wallets_demo_skipped", user=username, reason="no such demo user")
            continue
        owner = Caller(subject=user_id, client_id="demo-legacy", roles=frozenset({"customer"}))
        # Operations commit a recovery point part way, so the session is managed by hand.
        async with runtime.database.sessions() as session:
            wallet, _ = await wallets.open_wallet(session, owner, currency, f"demo-open-{currency}")
            await operations.deposit(
                session,
                TREASURY,
                wallet.id,
                amount,
                "demo opening balance",
                f"demo-deposit-{username}-{currency}",
            )
            await session.commit()
            runtime.database.after_commit(session)
