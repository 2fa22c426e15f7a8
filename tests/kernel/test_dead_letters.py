"""Dead letters through HTTP (issue 12's proof): a consumer that fails is retried, then
dead-lettered, then replayed by an operator.

The kernel's sample service runs with two consumers of its own here (`fragile` fails
while a note's text is broken, `doomed` always fails on notes whose text starts with
"doomed"), behind the gateway with the sample's default edge policy (every path needs a
token), and development tokens per role. One platform serves the module: each test makes
its own notes and finds its own rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.config import Settings
from paymesh.kernel.db import utcnow
from paymesh.kernel.events import CloudEvent
from paymesh.kernel.runtime import ConsumerSpec, ServiceRuntime
from paymesh.platform import Platform
from tests.conftest import _drop_schemas, http_client
from tests.kernel.sample.app import SPEC, count_effect
from tests.kernel.support import bearer, effect_count, eventually, runtime_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE = "/v1/sample/dead-letters"
MAX_ATTEMPTS = 5
PROBLEM = "application/problem+json"

broken: set[str] = set()
"""Note texts the `fragile` consumer fails on."""
attempts: Counter[str] = Counter()
"""Deliveries `fragile` tried, per note id (the failed ones roll back: counted here)."""
event_of: dict[str, str] = {}
"""The event id of each note's `sample.note.created`."""


async def fragile(session: AsyncSession, event: CloudEvent) -> None:
    note_id = event.data["id"]
    attempts[note_id] += 1
    event_of[note_id] = event.id
    if event.data["text"] in broken:
        raise ValueError(f"cannot take note {event.data['text']}")
    await count_effect(session, f"fragile:{note_id}")


async def doomed(session: AsyncSession, event: CloudEvent) -> None:
    if str(event.data["text"]).startswith("doomed"):
        raise RuntimeError("doomed for ever: " + "x" * 2000)
    await count_effect(session, f"doomed:{event.data['id']}")


def _consumers(_runtime: ServiceRuntime) -> list[ConsumerSpec]:
    return [
        ConsumerSpec("fragile", ("sample.note.created",), fragile),
        ConsumerSpec("doomed", ("sample.note.created",), doomed),
    ]


# The sample with these consumers and no edge routes of its own: every /v1/sample path
# needs a token at the gateway, as a real service's do.
DLQ_SPEC = dataclasses.replace(SPEC, consumers=_consumers, edge_routes=())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
) -> AsyncIterator[Platform]:
    settings = Settings(
        _env_file=None,
        env="test",
        data_dir=tmp_path_factory.mktemp("dead-letters") / "var",
        database_url=postgres_database,
        access_log=False,
        gateway={"rate_limits": False},
        events={
            "max_attempts": MAX_ATTEMPTS,
            "retry_base_seconds": 0.001,
            "relay_interval_seconds": 0.05,
        },
    )
    built = Platform(settings, [], specs=[DLQ_SPEC])
    if postgres_database:
        await _drop_schemas(postgres_database, ["sample"])
    await built.migrate()
    await built.start()
    yield built
    await built.stop()
    if postgres_database:
        await _drop_schemas(postgres_database, ["sample"])


@pytest_asyncio.fixture(loop_scope="module")
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(platform) as http:
        yield http


def token(platform: Platform, role: str) -> dict[str, str]:
    if role == "service":
        return bearer(
            platform.tokens.issue(
                "service-payments", roles=["service"], client_id="service-payments"
            )
        )
    return bearer(platform.tokens.issue(f"usr_{role}", roles=[role]))


_serial = iter(range(1_000_000))


async def create_note(client: httpx.AsyncClient, platform: Platform, text: str) -> str:
    """A note (its event goes to both consumers); returns the note's id."""
    response = await client.post(
        "/v1/sample/notes",
        json={"text": text, "amount": 100, "currency": "USD"},
        headers=token(platform, "ops"),
    )
    assert response.status_code == 201, response.text
    note_id: str = response.json()["id"]
    return note_id


async def dead_letters(client: httpx.AsyncClient, platform: Platform, **query: Any) -> list[Any]:
    """Every dead letter the list shows for `query`, following the cursors."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        response = await client.get(BASE, params=params, headers=token(platform, "ops"))
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def dead_letter_of(
    client: httpx.AsyncClient, platform: Platform, note_id: str, consumer: str
) -> dict[str, Any]:
    """The waiting dead letter of `consumer` for the note's event, once it is written."""

    async def probe() -> list[Any]:
        # `fragile` is subscribed first, so it has seen the event before `doomed` fails.
        event_id = event_of.get(note_id)
        rows = await dead_letters(client, platform, consumer=consumer, replayed="false")
        return [row for row in rows if event_id and row["event_id"] == event_id]

    [found] = await eventually(probe, bool)
    result: dict[str, Any] = found
    return result


async def table(platform: Platform, name: str) -> list[dict[str, Any]]:
    runtime = runtime_of(platform)
    selected = runtime.tables.metadata.tables[name]
    async with runtime.database.transaction(read_only=True) as session:
        return [dict(row._mapping) for row in await session.execute(select(selected))]


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == code


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_serial)}"


class TestReplayByAnOperator:
    async def test_a_failing_consumer_is_retried_dead_lettered_listed_and_replayed_once(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        text = unique("broken")
        broken.add(text)
        note_id = await create_note(client, platform, text)

        dead = await dead_letter_of(client, platform, note_id, "sample.fragile")

        assert attempts[note_id] == MAX_ATTEMPTS
        assert dead["attempts"] == MAX_ATTEMPTS
        assert dead["event_type"] == "sample.note.created"
        assert f"cannot take note {text}" in dead["error"]
        assert dead["replayed_at"] is None
        assert set(dead) == {
            "id",
            "consumer",
            "event_id",
            "event_type",
            "attempts",
            "error",
            "failed_at",
            "replayed_at",
        }  # no envelope, no data in a list
        assert await effect_count(platform, f"fragile:{note_id}") == 0

        read = await client.get(f"{BASE}/{dead['id']}", headers=token(platform, "ops"))
        assert read.status_code == 200, read.text
        assert read.json()["envelope"]["data"]["id"] == note_id
        assert read.json()["envelope"]["id"] == dead["event_id"]

        broken.discard(text)
        replayed = await client.post(f"{BASE}/{dead['id']}/replay", headers=token(platform, "ops"))

        assert replayed.status_code == 200, replayed.text
        body = replayed.json()
        assert body["id"] == dead["id"]
        assert body["outcome"] == "handled"
        assert body["dead_letter_id"] is None
        assert body["replayed_at"] is not None
        assert attempts[note_id] == MAX_ATTEMPTS + 1
        assert await effect_count(platform, f"fragile:{note_id}") == 1
        inbox = await table(platform, "inbox_event")
        assert {"event_id": dead["event_id"], "consumer": "sample.fragile"} in [
            {"event_id": row["event_id"], "consumer": row["consumer"]} for row in inbox
        ]
        after = (await client.get(f"{BASE}/{dead['id']}", headers=token(platform, "admin"))).json()
        assert after["replayed_at"] is not None
        waiting = await dead_letters(client, platform, consumer="fragile", replayed="false")
        assert dead["id"] not in [item["id"] for item in waiting]
        done = await dead_letters(client, platform, consumer="fragile", replayed="true")
        assert dead["id"] in [item["id"] for item in done]

        again = await client.post(f"{BASE}/{dead['id']}/replay", headers=token(platform, "ops"))

        assert_problem(again, 409, "already_replayed")
        assert await effect_count(platform, f"fragile:{note_id}") == 1
        assert attempts[note_id] == MAX_ATTEMPTS + 1

    async def test_two_operators_replaying_at_once_run_the_handler_once(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        text = unique("broken")
        broken.add(text)
        note_id = await create_note(client, platform, text)
        dead = await dead_letter_of(client, platform, note_id, "sample.fragile")
        broken.discard(text)

        answers = await asyncio.gather(
            client.post(f"{BASE}/{dead['id']}/replay", headers=token(platform, "ops")),
            client.post(f"{BASE}/{dead['id']}/replay", headers=token(platform, "admin")),
        )

        assert sorted(answer.status_code for answer in answers) == [200, 409]
        [refused] = [answer for answer in answers if answer.status_code == 409]
        assert_problem(refused, 409, "already_replayed")
        assert await effect_count(platform, f"fragile:{note_id}") == 1
        assert attempts[note_id] == MAX_ATTEMPTS + 1

    async def test_a_replay_that_fails_again_says_so_and_names_the_new_dead_letter(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        note_id = await create_note(client, platform, unique("doomed"))
        dead = await dead_letter_of(client, platform, note_id, "sample.doomed")

        replayed = await client.post(
            f"{BASE}/{dead['id']}/replay", headers=token(platform, "admin")
        )

        assert replayed.status_code == 200, replayed.text
        body = replayed.json()
        assert body["outcome"] == "dead_lettered_again"
        assert body["dead_letter_id"] not in (None, dead["id"])
        again = await dead_letter_of(client, platform, note_id, "sample.doomed")
        assert again["id"] == body["dead_letter_id"]
        assert again["event_id"] == dead["event_id"]
        assert again["replayed_at"] is None
        assert await effect_count(platform, f"doomed:{note_id}") == 0

    async def test_a_list_cuts_the_error_and_the_dead_letter_holds_it_whole(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        note_id = await create_note(client, platform, unique("doomed"))
        dead = await dead_letter_of(client, platform, note_id, "sample.doomed")

        read = await client.get(f"{BASE}/{dead['id']}", headers=token(platform, "ops"))

        assert len(dead["error"]) == 500
        assert len(read.json()["error"]) > 2000
        assert read.json()["error"].startswith(dead["error"])

    async def test_a_consumer_that_no_longer_exists_is_409_and_the_row_waits(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        runtime = runtime_of(platform)
        dead_id = f"dlq_{unique('retired').replace('-', '')}"
        async with runtime.database.transaction() as session:
            await session.execute(
                runtime.tables.dead_letter.insert().values(
                    id=dead_id,
                    event_id="evt_retired",
                    consumer="sample.retired",
                    event_type="sample.note.created",
                    envelope={"id": "evt_retired", "type": "sample.note.created"},
                    attempts=MAX_ATTEMPTS,
                    error="ValueError('gone')",
                    failed_at=utcnow(),
                )
            )

        response = await client.post(f"{BASE}/{dead_id}/replay", headers=token(platform, "ops"))

        assert_problem(response, 409, "consumer_gone")
        [row] = [row for row in await table(platform, "dead_letter") if row["id"] == dead_id]
        assert row["replayed_at"] is None

    async def test_an_unknown_dead_letter_is_404(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        for response in (
            await client.get(f"{BASE}/dlq_nothing", headers=token(platform, "ops")),
            await client.post(f"{BASE}/dlq_nothing/replay", headers=token(platform, "ops")),
        ):
            assert_problem(response, 404, "dead_letter_not_found")


class TestListing:
    async def test_filters_by_consumer_event_type_and_state_and_pages_without_gaps(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        notes = [await create_note(client, platform, unique("doomed")) for _ in range(3)]
        for note_id in notes:
            await dead_letter_of(client, platform, note_id, "sample.doomed")

        short = await dead_letters(client, platform, consumer="doomed", limit=1)
        full = await dead_letters(client, platform, consumer="sample.doomed", limit=2)
        everything = await dead_letters(client, platform, limit=100)

        assert [item["id"] for item in short] == [item["id"] for item in full]
        assert len({item["id"] for item in short}) == len(short) >= 3
        assert {item["consumer"] for item in short} == {"sample.doomed"}
        assert {item["consumer"] for item in everything} >= {"sample.doomed"}
        ordered = [(item["failed_at"], item["id"]) for item in everything]
        assert ordered == sorted(ordered)
        assert await dead_letters(client, platform, event_type="sample.note.voided") == []
        typed = await dead_letters(client, platform, event_type="sample.note.created")
        assert {item["id"] for item in typed} == {item["id"] for item in everything}
        assert await dead_letters(client, platform, consumer="nobody") == []


class TestAccess:
    @pytest.mark.parametrize("role", ["customer", "merchant", "service", "finance", "auditor"])
    async def test_only_ops_and_admin_may_list_read_or_replay(
        self, platform: Platform, client: httpx.AsyncClient, role: str
    ) -> None:
        note_id = await create_note(client, platform, unique("doomed"))
        dead = await dead_letter_of(client, platform, note_id, "sample.doomed")
        headers = token(platform, role)

        assert_problem(await client.get(BASE, headers=headers), 403, "forbidden")
        assert_problem(await client.get(f"{BASE}/{dead['id']}", headers=headers), 403, "forbidden")
        replay = await client.post(f"{BASE}/{dead['id']}/replay", headers=headers)

        assert_problem(replay, 403, "forbidden")
        [row] = [row for row in await table(platform, "dead_letter") if row["id"] == dead["id"]]
        assert row["replayed_at"] is None

    async def test_an_anonymous_caller_is_refused_at_the_gateway(
        self, client: httpx.AsyncClient
    ) -> None:
        for response in (
            await client.get(BASE),
            await client.post(f"{BASE}/dlq_anything/replay"),
        ):
            assert_problem(response, 401, "unauthenticated")

    async def test_a_replay_with_an_idempotency_key_answers_the_same_twice(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        note_id = await create_note(client, platform, unique("doomed"))
        dead = await dead_letter_of(client, platform, note_id, "sample.doomed")
        headers = token(platform, "ops") | {"idempotency-key": unique("replay")}

        first = await client.post(f"{BASE}/{dead['id']}/replay", headers=headers)
        second = await client.post(f"{BASE}/{dead['id']}/replay", headers=headers)

        assert first.status_code == second.status_code == 200, second.text
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        rows = [
            row
            for row in await table(platform, "dead_letter")
            if row["event_id"] == dead["event_id"]
        ]
        assert len(rows) == 2  # one replay, failed again once


HOSTILE_QUERIES = [
    ({"limit": "0"}, 422, "validation_failed"),
    ({"limit": "101"}, 422, "validation_failed"),
    ({"limit": "ten"}, 422, "validation_failed"),
    ({"replayed": "maybe"}, 422, "validation_failed"),
    ({"consumer": "x' OR '1'='1"}, 422, "validation_failed"),
    ({"consumer": "a" * 101}, 422, "validation_failed"),
    ({"event_type": "t" * 201}, 422, "validation_failed"),
    ({"event_type": "sample.*"}, 422, "validation_failed"),
    ({"cursor": "not-a-cursor"}, 422, "invalid_cursor"),
    ({"cursor": "W10"}, 422, "invalid_cursor"),
    ({"cursor": "c" * 513}, 422, "validation_failed"),
    ({"consumer": "sample\x00doomed"}, 400, "invalid_characters"),
]


class TestHostileInput:
    @pytest.mark.parametrize(("query", "status", "code"), HOSTILE_QUERIES)
    async def test_a_hostile_query_is_a_problem(
        self,
        platform: Platform,
        client: httpx.AsyncClient,
        query: dict[str, str],
        status: int,
        code: str,
    ) -> None:
        response = await client.get(BASE, params=query, headers=token(platform, "ops"))

        assert_problem(response, status, code)

    @pytest.mark.parametrize(
        "dead_letter_id", ["dlq x", "dlq_" + "a" * 70, "..", "dlq_1;DROP TABLE dead_letter"]
    )
    async def test_a_hostile_id_is_refused_and_changes_nothing(
        self, platform: Platform, client: httpx.AsyncClient, dead_letter_id: str
    ) -> None:
        before = await table(platform, "dead_letter")

        read = await client.get(f"{BASE}/{dead_letter_id}", headers=token(platform, "ops"))
        replay = await client.post(
            f"{BASE}/{dead_letter_id}/replay", headers=token(platform, "ops")
        )

        for response in (read, replay):
            assert 400 <= response.status_code < 500, response.text
            assert response.headers["content-type"].startswith(PROBLEM)
        assert await table(platform, "dead_letter") == before


class TestDocumentation:
    async def test_the_routes_are_in_the_openapi_document_under_the_services_tag(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()
        paths = document["paths"]

        listing = paths[BASE]["get"]
        replay = paths[f"{BASE}/{{dead_letter_id}}/replay"]["post"]
        read = paths[f"{BASE}/{{dead_letter_id}}"]["get"]
        for operation in (listing, read, replay):
            assert operation["tags"] == ["sample"]
            assert operation["security"] == [{"bearer": []}]
            assert "forbidden" in operation["responses"]["403"]["x-problem-codes"]
        assert set(replay["responses"]["409"]["x-problem-codes"]) >= {
            "already_replayed",
            "consumer_gone",
        }
        assert "invalid_cursor" in listing["responses"]["422"]["x-problem-codes"]
        assert "dead_letter_not_found" in read["responses"]["404"]["x-problem-codes"]


class TestEveryServiceWithConsumers:
    async def test_serves_dead_letters_and_no_route_of_its_own_takes_the_path(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        settings = Settings(
            _env_file=None, env="test", data_dir=tmp_path_factory.mktemp("services") / "var"
        )
        built = Platform(settings)  # every service; nothing started, nothing migrated
        ops = token(built, "ops")

        for name, runtime in built.runtimes.items():
            documented = set(built.service_apps[name].openapi()["paths"])
            served = f"/v1/{name}/dead-letters" in documented
            assert served == bool(runtime.consumers), name
            if not served:
                continue
            assert f"/v1/{name}" in runtime.spec.prefixes, name  # the gateway routes it here
            # Refused by the list's own parameter check, before any database is touched:
            # the request reached the dead-letter route, not one such as /{user_id}.
            transport = httpx.ASGITransport(app=built.asgi[name])
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
                response = await http.get(
                    f"/v1/{name}/dead-letters", params={"limit": 0}, headers=ops
                )
            assert_problem(response, 422, "validation_failed")
            assert [error["field"] for error in response.json()["errors"]] == ["limit"], name
        assert {name for name, runtime in built.runtimes.items() if runtime.consumers} >= {
            "identity",
            "profiles",
            "risk",
            "audit",
        }

    async def test_a_real_service_answers_an_ops_token_through_the_gateway(
        self, tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
    ) -> None:
        settings = Settings(
            _env_file=None,
            env="test",
            data_dir=tmp_path_factory.mktemp("audit") / "var",
            database_url=postgres_database,
            access_log=False,
            gateway={"rate_limits": False},
        )
        audit = Platform(settings, ["audit"], run_workers=False)
        if postgres_database:
            await _drop_schemas(postgres_database, ["audit"])
        await audit.migrate()
        await audit.start()
        try:
            async with http_client(audit) as http:
                listed = await http.get("/v1/audit/dead-letters", headers=token(audit, "ops"))
                refused = await http.get("/v1/audit/dead-letters", headers=token(audit, "customer"))
                anonymous = await http.get("/v1/audit/dead-letters")
        finally:
            await audit.stop()
            if postgres_database:
                await _drop_schemas(postgres_database, ["audit"])

        assert listed.status_code == 200, listed.text
        assert listed.json() == {"items": [], "next_cursor": None}
        assert_problem(refused, 403, "forbidden")
        assert_problem(anonymous, 401, "unauthenticated")
