"""Builds the risk service: evaluations with reasons, rule sets as data, the review queue
and sanctions screening."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from paymesh.forex.client import HttpForexClient
from paymesh.kernel.faults import die_here
from paymesh.kernel.groupcommit import GroupCommit
from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec
from paymesh.profiles.client import HttpProfiles
from paymesh.risk.api import router
from paymesh.risk.cases import Cases
from paymesh.risk.consumers import consumers
from paymesh.risk.demo import seed_demo
from paymesh.risk.events import EVENTS
from paymesh.risk.fastpath import fast_paths
from paymesh.risk.models import kernel_tables, metadata
from paymesh.risk.profile_facts import CachedProfiles
from paymesh.risk.rulesets import RuleSets
from paymesh.risk.sanctions import Screening
from paymesh.risk.service import Evaluations


def _setup(runtime: ServiceRuntime) -> None:
    settings = runtime.settings.risk
    runtime.state["rulesets"] = RuleSets(runtime.outbox, runtime.database)
    runtime.state["cases"] = Cases(runtime.outbox)
    runtime.state["screening"] = Screening(
        runtime.database,
        threshold=settings.screening_threshold,
        required=settings.screening_required,
    )


def _crash_point(crash_at: str | None) -> Callable[[list[Any]], None] | None:
    """The fault injection of the crash tests (settings refuse it outside PAYMESH_ENV=test):
    die once a batch of two or more decisions is written and not yet committed."""
    if crash_at != "decisions_batch_written":
        return None

    def before_commit(results: list[Any]) -> None:
        # Each work's result: (its answer, the decision's row, or None for a replay).
        decisions = [decided["id"] for _, decided in results if decided is not None]
        if len(decisions) >= 2:
            die_here("risk_crash_injected", step=crash_at, decisions=decisions)

    return before_commit


async def _start(runtime: ServiceRuntime) -> None:
    rulesets: RuleSets = runtime.state["rulesets"]
    screening: Screening = runtime.state["screening"]
    await rulesets.install_default(runtime.database)
    await screening.refresh()
    screening.watch(runtime.settings.risk.list_refresh_seconds)
    # Made at start: the in-process transport between services exists only by then.
    forex_http, profiles_http = runtime.client("forex"), runtime.client("profiles")
    runtime.state["http_clients"] = (forex_http, profiles_http)
    forex = HttpForexClient(forex_http)
    runtime.state["forex"] = forex
    profiles = CachedProfiles(
        HttpProfiles(profiles_http),
        runtime.cache,
        ttl_seconds=runtime.settings.risk.profile_cache_seconds,
    )
    runtime.state["profile_facts"] = profiles
    evaluations = Evaluations(rulesets, screening, profiles, forex, runtime.outbox)
    runtime.state["evaluations"] = evaluations
    runtime.state["decisions"] = GroupCommit(
        runtime.database,
        "risk-decisions",
        handle=evaluations.decide_all,
        before_commit=_crash_point(runtime.settings.risk.crash_at),
    )


async def _stop(runtime: ServiceRuntime) -> None:
    decisions: GroupCommit | None = runtime.state.get("decisions")
    if decisions is not None:  # made at start
        await decisions.stop()
    screening: Screening = runtime.state["screening"]
    await screening.stop()
    for client in runtime.state.pop("http_clients", ()):
        await client.aclose()


SPEC = ServiceSpec(
    name="risk",
    title="Risk",
    description="Decisions with reasons before money moves: rules as data, limits, "
    "velocity, sanctions screening, and the review queue.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    setup=_setup,
    on_start=_start,
    on_stop=_stop,
    consumers=consumers,
    fast_paths=fast_paths,
    seed_demo=seed_demo,
    events=EVENTS,
)
