"""Demo data for `paymesh up --demo`: the UN consolidated sanctions list of 2020-11-24
(packaged with Paymesh; real, public, and old: a demo list, never a compliance one), so
evaluations and screenings answer from the first start. The default rule set is
installed at every start anyway."""

from __future__ import annotations

import gzip
from pathlib import Path

import structlog

from paymesh.kernel.runtime import ServiceRuntime
from paymesh.risk.sanctions import Screening, newest_versions, parse_list, store_list

log = structlog.get_logger("paymesh.risk")

DEMO_LIST = Path(__file__).parent / "data" / "un-consolidated-2020-11-24.xml.gz"


async def seed_demo(runtime: ServiceRuntime) -> None:
    async with runtime.database.transaction() as session:
        if await newest_versions(session):
            return  # an operator's list (or an earlier demo seed) is there already
        content = gzip.decompress(DEMO_LIST.read_bytes())
        sanctions = parse_list("un-xml", [content])
        await store_list(session, sanctions, "un-xml", [content], "paymesh-demo")
    screening: Screening = runtime.state["screening"]
    await screening.refresh()
    log.info("demo_sanctions_list_loaded", entries=len(sanctions.entries))
