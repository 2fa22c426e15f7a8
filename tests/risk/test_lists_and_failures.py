"""Sanctions lists loaded by the CLI (UN XML and OFAC CSV) and picked up by a running
process; risk failing closed when a fact cannot be had; the payments events the velocity
store follows; the schema its migrations build."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

from paymesh.cli import app
from paymesh.kernel.config import Settings, get_settings
from paymesh.kernel.events import CloudEvent
from paymesh.platform import Platform
from paymesh.risk.demo import DEMO_LIST
from paymesh.risk.models import Activity, metadata
from paymesh.risk.sanctions import Screening
from tests.conftest import http_client
from tests.profiles.support import eventually
from tests.risk.support import risk_settings

OFAC = Path(__file__).parent / "screening" / "data"
NOWHERE = "http://127.0.0.1:1"


def service_headers(platform: Platform) -> dict[str, str]:
    token = platform.tokens.issue("service-payments", roles=["service"], client_id="payments")
    return {"authorization": f"Bearer {token}"}


def cli_environment(settings: Settings) -> dict[str, str]:
    environment = {"PAYMESH_DATA_DIR": str(settings.data_dir), "PAYMESH_ENV": "test"}
    if settings.database_url:
        environment["PAYMESH_DATABASE_URL"] = settings.database_url
    return environment


def invoke(arguments: list[str], env: dict[str, str]) -> Any:
    """The CLI as a separate process would run it (its settings read afresh)."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, arguments, env=env)
    finally:
        get_settings.cache_clear()


def evaluation(customer_id: str = "usr_someone") -> dict[str, Any]:
    return {
        "transaction_id": "pay_1",
        "customer_id": customer_id,
        "type": "p2p",
        "amount": 100,
        "currency": "USD",
    }


async def test_lists_loaded_by_the_cli_reach_a_running_process(
    make_platform: Callable[..., Any], settings: Settings, tmp_path: Path
) -> None:
    platform: Platform = await make_platform(["risk"], run_workers=False)
    screening: Screening = platform.runtimes["risk"].state["screening"]
    assert screening.loaded is None
    un_file = tmp_path / "un.xml"
    un_file.write_bytes(gzip.decompress(DEMO_LIST.read_bytes()))
    environment = cli_environment(settings)

    loaded = await asyncio.to_thread(
        invoke,
        ["risk", "load-list", "--format", "un-xml", str(un_file)],
        env=environment,
    )
    assert loaded.exit_code == 0, loaded.output
    assert "1018 entries" in loaded.output
    assert await screening.refresh() is True
    # Screenings are remembered per loaded index; a name only the next list holds misses
    # now, and must hit once that list is loaded (nothing remembered outlives its lists).
    assert screening.screen("Boris Ilyich Quartzen")[0] == []
    assert screening.screen("Boris Ilyich Quartzen")[0] == []
    ofac = await asyncio.to_thread(
        invoke,
        [
            "risk",
            "load-list",
            "--format",
            "ofac-csv",
            *(str(OFAC / f) for f in ("sdn.csv", "alt.csv", "add.csv")),
        ],
        env=environment,
    )
    assert ofac.exit_code == 0, ofac.output

    assert await screening.refresh() is True
    assert screening.loaded is not None
    assert {v.list_name for v in screening.loaded.versions} == {"UN", "OFAC-SDN"}
    assert [m.entry_id for m in screening.screen("Boris Ilyich Quartzen")[0]] == ["1001"]
    matches, _ = screening.screen("Ri Won Ho", country="KP")
    assert matches[0].entry_id == "6908555"
    assert await screening.refresh() is False  # nothing newer: the index is kept

    listed = await asyncio.to_thread(invoke, ["risk", "lists"], env=environment)
    assert "UN" in listed.output and "OFAC-SDN" in listed.output


async def test_a_bad_list_file_loads_nothing(
    make_platform: Callable[..., Any], settings: Settings, tmp_path: Path
) -> None:
    await make_platform(["risk"], run_workers=False)
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<CONSOLIDATED_LIST><INDIVIDUALS><INDIVIDUAL>")
    result = await asyncio.to_thread(
        invoke,
        ["risk", "load-list", "--format", "un-xml", str(broken)],
        env=cli_environment(settings),
    )
    assert result.exit_code == 1
    listed = await asyncio.to_thread(
        invoke, ["risk", "lists", "--json"], env=cli_environment(settings)
    )
    assert listed.output.strip() == "[]"


async def test_without_a_list_risk_refuses_to_decide(make_platform: Callable[..., Any]) -> None:
    platform: Platform = await make_platform(["risk"], run_workers=False)
    async with http_client(platform) as http:
        screened = await http.post(
            "/v1/risk/screenings", json={"name": "Anyone"}, headers=service_headers(platform)
        )
        assert screened.status_code == 503
        assert screened.json()["code"] == "no_sanctions_list"


async def test_when_profiles_cannot_be_reached_there_is_no_decision(
    make_platform: Callable[..., Any], settings: Settings
) -> None:
    profiles = settings.profiles.model_copy(update={"url": NOWHERE})
    risk = settings.risk.model_copy(update={"screening_required": False})
    platform: Platform = await make_platform(
        ["forex", "risk"],
        settings_override=settings.model_copy(
            update={"profiles": profiles, "risk": risk, "http_retries": 0}
        ),
    )
    async with http_client(platform) as http:
        response = await http.post(
            "/v1/risk/evaluate", json=evaluation(), headers=service_headers(platform)
        )
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "facts_unavailable"
    async with platform.runtimes["risk"].database.transaction() as session:
        assert (await session.execute(Activity.__table__.select())).first() is None


async def test_payment_events_drive_the_velocity_store(
    make_platform: Callable[..., Any], settings: Settings
) -> None:
    platform: Platform = await make_platform(
        ["forex", "risk"], settings_override=risk_settings(settings)
    )
    runtime = platform.runtimes["risk"]
    data = {"payment_id": "pay_ev1", "customer_id": "usr_ev", "amount": 1000, "currency": "EUR"}

    async def activity() -> Activity | None:
        async with runtime.database.transaction() as session:
            return await session.get(Activity, ("usr_ev", "pay_ev1"))

    await platform.bus.publish(
        CloudEvent(source="/paymesh/payments", type="payments.payment.succeeded", data=data)
    )
    recorded = await eventually(activity)
    assert recorded.amount_usd == 1084  # EUR 10.00 at the static 1.0842, rounded down
    assert recorded.voided is False

    await platform.bus.publish(
        CloudEvent(source="/paymesh/payments", type="payments.payment.failed", data=data)
    )

    async def voided() -> bool:
        found = await activity()
        return found is not None and found.voided

    assert await eventually(voided)


async def test_the_schema_matches_the_models(make_platform: Callable[..., Any]) -> None:
    platform: Platform = await make_platform(["risk"], run_workers=False)
    database = platform.runtimes["risk"].database
    async with database.engine.connect() as connection:

        def differences(sync: Any) -> list[Any]:
            context = MigrationContext.configure(
                sync, opts={"compare_type": True, "version_table": "alembic_version_risk"}
            )
            return list(compare_metadata(context, metadata))

        assert await connection.run_sync(differences) == []


async def test_risk_paths_are_behind_the_gateway(make_platform: Callable[..., Any]) -> None:
    platform: Platform = await make_platform(["risk"], run_workers=False)
    async with http_client(platform) as http:
        for method, path in [
            ("POST", "/v1/risk/evaluate"),
            ("GET", "/v1/risk/rulesets"),
            ("POST", "/v1/risk/screenings"),
            ("GET", "/v1/risk/cases"),
        ]:
            response = await http.request(method, path)
            assert response.status_code == 401, path
            assert isinstance(response, httpx.Response)
