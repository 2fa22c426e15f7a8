"""The audit trail end to end: other services' events become masked, chained records (who
acted, which request); auditors search, export and verify through the gateway; tampering
with the database directly is caught and named; a redelivered event adds nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from paymesh.audit.models import AuditCheckpoint, AuditRecord
from paymesh.audit.trail import AuditTrail
from paymesh.cli import app
from paymesh.kernel.config import Settings, get_settings
from paymesh.kernel.events import CloudEvent
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.profiles.support import eventually

PASSWORD = "plum-orbit-candle-42"


def staff(platform: Platform, role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {platform.tokens.issue(f'{role}-1', roles=[role])}"}


async def records(platform: Platform, **where: Any) -> list[AuditRecord]:
    runtime = platform.runtimes["audit"]
    async with runtime.database.transaction(read_only=True) as session:
        query = select(AuditRecord).order_by(AuditRecord.chain, AuditRecord.seq)
        for name, value in where.items():
            query = query.where(getattr(AuditRecord, name) == value)
        return list((await session.scalars(query)).all())


async def publish(platform: Platform, count: int, source: str = "/paymesh/payments") -> None:
    for number in range(count):
        await platform.bus.publish(
            CloudEvent(
                source=source,
                type="payments.payment.succeeded",
                subject=f"pay_{number}",
                data={
                    "payment_id": f"pay_{number}",
                    "card_number": "4111 1111 1111 1111",
                    "payer_email": "jane.doe@example.com",
                    "otp": "123456",
                },
            )
        )


async def settled(platform: Platform, chain: str, count: int) -> list[AuditRecord]:
    async def enough() -> list[AuditRecord] | None:
        found = await records(platform, chain=chain)
        return found if len(found) >= count else None

    return await eventually(enough)


@pytest.fixture
async def platform(make_platform: Callable[..., Any]) -> Platform:
    made: Platform = await make_platform(["identity", "audit"])
    return made


class TestRecording:
    async def test_a_users_registration_is_recorded_masked_with_the_request(
        self, platform: Platform
    ) -> None:
        async with http_client(platform) as http:
            response = await http.post(
                "/v1/identity/users",
                json={"username": "dana", "password": PASSWORD, "email": "dana.scully@fbi.gov"},
            )
            assert response.status_code == 201, response.text
        found = await settled(platform, "identity", 1)
        record = next(r for r in found if r.type.startswith("identity.user."))
        dumped = json.dumps(record.data)
        assert "dana.scully@fbi.gov" not in dumped
        assert PASSWORD not in dumped
        assert record.actor.get("request_id") == response.headers["x-request-id"]
        assert record.seq >= 1 and len(record.hash) == 64

    async def test_secrets_and_card_numbers_never_reach_the_table(self, platform: Platform) -> None:
        await publish(platform, 3)
        found = await settled(platform, "payments", 3)
        for record in found:
            dumped = json.dumps(record.data)
            assert "4111 1111 1111 1111" not in dumped and "4111111111111111" not in dumped
            assert "123456" not in dumped
            assert "jane.doe@example.com" not in dumped
        assert [record.seq for record in found] == [1, 2, 3]
        assert found[1].prev_hash == found[0].hash

    async def test_a_redelivered_event_adds_nothing(self, platform: Platform) -> None:
        event = CloudEvent(source="/paymesh/payments", type="payments.payment.failed", data={})
        await platform.bus.publish(event)
        await platform.bus.publish(event)
        await settled(platform, "payments", 1)
        await asyncio.sleep(0.3)
        assert len(await records(platform, event_id=event.id)) == 1


class TestVerification:
    async def test_an_untouched_trail_verifies(self, platform: Platform) -> None:
        await publish(platform, 5)
        await settled(platform, "payments", 5)
        async with http_client(platform) as http:
            response = await http.get("/v1/audit/verify", headers=staff(platform, "auditor"))
        assert response.status_code == 200
        assert response.json()["ok"] is True
        assert response.json()["records"] >= 5

    @pytest.mark.parametrize("tampering", ["change", "delete_middle", "delete_last", "reorder"])
    async def test_tampering_in_the_database_is_named(
        self, platform: Platform, tampering: str
    ) -> None:
        await publish(platform, 6)
        await settled(platform, "payments", 6)
        runtime = platform.runtimes["audit"]
        trail: AuditTrail = runtime.state["trail"]
        async with runtime.database.transaction() as session:
            await trail.seal(session)
        table = AuditRecord.__table__
        async with runtime.database.transaction() as session:
            chain = table.c.chain == "payments"
            if tampering == "change":
                await session.execute(
                    update(table).where(chain, table.c.seq == 3).values(data={"amount": 1})
                )
            elif tampering == "delete_middle":
                await session.execute(delete(table).where(chain, table.c.seq == 3))
            elif tampering == "delete_last":
                await session.execute(delete(table).where(chain, table.c.seq == 6))
            else:
                await session.execute(update(table).where(chain, table.c.seq == 3).values(seq=99))
                await session.execute(update(table).where(chain, table.c.seq == 4).values(seq=3))
                await session.execute(update(table).where(chain, table.c.seq == 99).values(seq=4))
        result = await trail.verify(runtime.database)
        assert result.ok is False
        assert result.first_problem is not None
        assert result.first_problem.chain == "payments"
        expected_seq = 6 if tampering == "delete_last" else 3
        assert result.first_problem.seq == expected_seq, result.first_problem

    async def test_a_changed_checkpoint_is_caught(self, platform: Platform) -> None:
        await publish(platform, 2)
        await settled(platform, "payments", 2)
        runtime = platform.runtimes["audit"]
        trail: AuditTrail = runtime.state["trail"]
        async with runtime.database.transaction() as session:
            await trail.seal(session)
        async with runtime.database.transaction() as session:
            await session.execute(update(AuditCheckpoint).values(heads={"payments": [1, "0" * 64]}))
        result = await trail.verify(runtime.database)
        assert result.ok is False

    async def test_seals_at_the_same_moment_all_succeed_and_stay_one_chain(
        self, platform: Platform
    ) -> None:
        """The periodic job, a prune and an operator may seal at once: each must link to
        the one before, not collide on the next id."""
        await publish(platform, 2)
        await settled(platform, "payments", 2)
        runtime = platform.runtimes["audit"]
        trail: AuditTrail = runtime.state["trail"]

        async def seal() -> int:
            async with runtime.database.transaction() as session:
                return await trail.seal(session)

        identifiers = await asyncio.gather(*(seal() for _ in range(6)))

        assert len(set(identifiers)) == 1  # nothing appended between them: one seal
        assert (await trail.verify(runtime.database)).ok is True

    async def test_pruning_keeps_the_trail_verifiable(self, platform: Platform) -> None:
        await publish(platform, 5)
        await settled(platform, "payments", 5)
        runtime = platform.runtimes["audit"]
        trail: AuditTrail = runtime.state["trail"]
        cutoff = (await records(platform, chain="payments", seq=4))[0].occurred_at
        async with runtime.database.transaction() as session:
            removed = await trail.prune(session, cutoff)
        assert removed >= 3
        assert [r.seq for r in await records(platform, chain="payments")] == [4, 5]
        assert (await trail.verify(runtime.database)).ok is True


class TestSearchAndExport:
    async def test_auditors_search_by_type_and_export(self, platform: Platform) -> None:
        await publish(platform, 4)
        await settled(platform, "payments", 4)
        async with http_client(platform) as http:
            headers = staff(platform, "auditor")
            page = await http.get(
                "/v1/audit/records",
                params={"type": "payments.*", "limit": 3},
                headers=headers,
            )
            assert page.status_code == 200, page.text
            assert len(page.json()["data"]) == 3
            rest = await http.get(
                "/v1/audit/records",
                params={"type": "payments.*", "cursor": page.json()["next_cursor"]},
                headers=headers,
            )
            assert len(rest.json()["data"]) == 1
            jsonl = await http.get("/v1/audit/export", params={"format": "jsonl"}, headers=headers)
            lines = [json.loads(line) for line in jsonl.text.splitlines()]
            assert sum(1 for line in lines if line["chain"] == "payments") == 4
            csv_export = await http.get(
                "/v1/audit/export", params={"format": "csv", "type": "payments.*"}, headers=headers
            )
            assert csv_export.headers["content-type"].startswith("text/csv")
            assert len(csv_export.text.strip().splitlines()) == 5  # header + 4
            counts = await http.get("/v1/audit/reports/daily-counts", headers=headers)
            assert any(
                row["type"] == "payments.payment.succeeded" and row["count"] == 4
                for row in counts.json()
            )

    @pytest.mark.parametrize("role", ["customer", "ops", "finance", "service"])
    async def test_only_auditors_and_admins_read(self, platform: Platform, role: str) -> None:
        async with http_client(platform) as http:
            response = await http.get("/v1/audit/records", headers=staff(platform, role))
        assert response.status_code == 403

    async def test_there_is_no_write_path(self, platform: Platform) -> None:
        async with http_client(platform) as http:
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                response = await http.request(
                    method, "/v1/audit/records", headers=staff(platform, "admin")
                )
                assert response.status_code in (404, 405)

    async def test_bad_filters_are_422(self, platform: Platform) -> None:
        async with http_client(platform) as http:
            headers = staff(platform, "auditor")
            for params in (
                {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
                {"type": "DROP TABLE"},
                {"cursor": "nope"},
                {"limit": 0},
            ):
                response = await http.get("/v1/audit/records", params=params, headers=headers)
                assert response.status_code == 422, params


async def test_the_cli_verifies_and_fails_on_tampering(
    platform: Platform, settings: Settings
) -> None:
    await publish(platform, 3)
    await settled(platform, "payments", 3)
    environment = {"PAYMESH_DATA_DIR": str(settings.data_dir), "PAYMESH_ENV": "test"}
    if settings.database_url:
        environment["PAYMESH_DATABASE_URL"] = settings.database_url

    def invoke() -> Any:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, ["audit", "verify"], env=environment)
        finally:
            get_settings.cache_clear()

    intact = await asyncio.to_thread(invoke)
    assert intact.exit_code == 0, intact.output
    assert intact.output.startswith("ok:")
    runtime = platform.runtimes["audit"]
    async with runtime.database.transaction() as session:
        await session.execute(
            update(AuditRecord.__table__)
            .where(AuditRecord.__table__.c.seq == 2, AuditRecord.__table__.c.chain == "payments")
            .values(type="payments.payment.refunded")
        )
    tampered = await asyncio.to_thread(invoke)
    assert tampered.exit_code == 1
    assert "seq 2" in tampered.output
