"""Builds the profiles service: customer profiles, KYC submissions and levels, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec
from paymesh.profiles.api import router
from paymesh.profiles.consumers import consumers
from paymesh.profiles.demo import seed_demo
from paymesh.profiles.events import EVENTS
from paymesh.profiles.identity import HttpIdentityAccounts
from paymesh.profiles.jobs import periodic_jobs, task_handlers
from paymesh.profiles.kyc import KycSubmissions
from paymesh.profiles.models import kernel_tables, metadata
from paymesh.profiles.service import Profiles
from paymesh.providers.client import HttpProviders, Providers


def _setup(runtime: ServiceRuntime) -> None:
    settings = runtime.settings.profiles
    profiles = Profiles(settings, runtime.outbox)

    async def enqueue(session: AsyncSession, kind: str, payload: dict[str, Any]) -> str:
        # The task queue is built after setup; look it up when a submission is made.
        return await runtime.tasks.enqueue(session, kind, payload)

    runtime.state["profiles"] = profiles
    runtime.state["kyc"] = KycSubmissions(profiles, settings, runtime.outbox, enqueue)
    runtime.state["identity"] = HttpIdentityAccounts(runtime.directory)


async def _start(runtime: ServiceRuntime) -> None:
    # Made at start: the in-process transport between services exists only by then.
    runtime.state["providers"] = HttpProviders(runtime.client("providers"))


async def _stop(runtime: ServiceRuntime) -> None:
    providers: Providers | None = runtime.state.pop("providers", None)
    if providers is not None:
        await providers.aclose()
    identity: HttpIdentityAccounts = runtime.state["identity"]
    await identity.aclose()


SPEC = ServiceSpec(
    name="profiles",
    title="Profiles",
    description="Customer profiles, KYC submissions and levels, and the limits of each level.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    setup=_setup,
    on_start=_start,
    on_stop=_stop,
    consumers=consumers,
    task_handlers=task_handlers,
    periodic_jobs=periodic_jobs,
    seed_demo=seed_demo,
    events=EVENTS,
)
