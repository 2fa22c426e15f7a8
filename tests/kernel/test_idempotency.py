"""The Idempotency-Key contract, exercised over HTTP on the sample service."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import httpx
import pytest
from sqlalchemy import update

from paymesh.kernel.db import utcnow
from paymesh.kernel.errors import IdempotencyKeyReused, IdempotencyRequestInProgress
from paymesh.kernel.idempotency import KeyedRequest, StoredResponse
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.kernel.sample import app as sample_app
from tests.kernel.support import NOTE, bearer, note_count, runtime_of, table_rows

NOTES = "/v1/sample/notes"


def headers(token: str, key: str) -> dict[str, str]:
    return {**bearer(token), "idempotency-key": key}


class TestIdempotentReplay:
    async def test_identical_request_replays_status_and_body(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        first = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-replay"))
        second = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-replay"))

        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers
        assert second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.content == first.content
        assert second.headers["content-type"] == first.headers["content-type"]

    async def test_replay_creates_no_second_note_or_event(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        for _ in range(3):
            response = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-once"))
            assert response.status_code == 201

        assert await note_count(sample) == 1
        outbox = await table_rows(sample, "outbox_event")
        assert [row["type"] for row in outbox] == ["sample.note.created"]

    async def test_key_order_in_the_json_body_does_not_matter(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        first = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-order"))
        reordered = dict(reversed(list(NOTE.items())))
        second = await client.post(NOTES, json=reordered, headers=headers(admin_token, "k-order"))

        assert second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()

    async def test_without_a_key_every_post_creates(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        for _ in range(2):
            response = await client.post(NOTES, json=NOTE, headers=bearer(admin_token))
            assert response.status_code == 201
            assert "idempotent-replayed" not in response.headers

        assert await note_count(sample) == 2


class TestIdempotencyKeyReuse:
    async def test_same_key_different_body_is_422(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        first = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-reuse"))
        other = {**NOTE, "amount": NOTE["amount"] + 1}
        second = await client.post(NOTES, json=other, headers=headers(admin_token, "k-reuse"))

        assert first.status_code == 201
        assert second.status_code == 422
        assert second.headers["content-type"] == "application/problem+json"
        assert second.json()["code"] == "idempotency_key_reused"
        assert await note_count(sample) == 1

    async def test_same_key_on_another_path_is_422(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        first = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-path"))
        second = await client.post(
            "/v1/sample/crash", json=NOTE, headers=headers(admin_token, "k-path")
        )

        assert first.status_code == 201
        assert second.status_code == 422
        assert second.json()["code"] == "idempotency_key_reused"


class TestIdempotencyInFlight:
    async def test_same_key_while_first_runs_is_409_then_first_replays(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        body = {**NOTE, "text": "held"}
        sample_app.gate["held"] = asyncio.Event()
        sample_app.arrived["held"] = asyncio.Event()
        first = asyncio.create_task(
            client.post(NOTES, json=body, headers=headers(admin_token, "k-flight"))
        )
        await asyncio.wait_for(sample_app.arrived["held"].wait(), timeout=10)

        second = await asyncio.wait_for(
            client.post(NOTES, json=body, headers=headers(admin_token, "k-flight")), timeout=10
        )
        assert not first.done()
        sample_app.gate["held"].set()
        first_response = await asyncio.wait_for(first, timeout=10)
        third = await client.post(NOTES, json=body, headers=headers(admin_token, "k-flight"))

        assert second.status_code == 409
        assert second.headers["content-type"] == "application/problem+json"
        assert second.json()["code"] == "idempotency_request_in_progress"
        assert first_response.status_code == 201, first_response.text
        assert third.status_code == 201
        assert third.headers["idempotent-replayed"] == "true"
        assert third.json() == first_response.json()
        assert await note_count(sample) == 1

    async def test_a_different_key_is_not_blocked_by_one_in_flight(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        body = {**NOTE, "text": "held"}
        sample_app.gate["held"] = asyncio.Event()
        sample_app.arrived["held"] = asyncio.Event()
        first = asyncio.create_task(
            client.post(NOTES, json=body, headers=headers(admin_token, "k-slow"))
        )
        await asyncio.wait_for(sample_app.arrived["held"].wait(), timeout=10)

        other = await asyncio.wait_for(
            client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-fast")), timeout=10
        )
        sample_app.gate["held"].set()
        first_response = await asyncio.wait_for(first, timeout=10)

        assert other.status_code == 201
        assert first_response.status_code == 201
        assert await note_count(sample) == 2

    async def test_a_request_cancelled_mid_work_leaves_no_claim_behind(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        # A client gone (or a worker stopped) in the middle: nothing was committed, so the
        # key must be free at once; no lease to wait out.
        body = {**NOTE, "text": "held"}
        sample_app.gate["held"] = asyncio.Event()
        sample_app.arrived["held"] = asyncio.Event()
        first = asyncio.create_task(
            client.post(NOTES, json=body, headers=headers(admin_token, "k-gone"))
        )
        await asyncio.wait_for(sample_app.arrived["held"].wait(), timeout=10)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert await table_rows(sample, "idempotency_record") == []

        sample_app.gate["held"].set()
        retry = await client.post(NOTES, json=body, headers=headers(admin_token, "k-gone"))

        assert retry.status_code == 201, retry.text
        assert "idempotent-replayed" not in retry.headers
        assert await note_count(sample) == 1

    async def test_same_key_in_another_process_is_409_on_postgresql(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        # A second platform on the same database knows nothing of the first's running
        # requests: only the database can say the key is taken (an advisory lock).
        if not runtime_of(sample).database.is_postgres:
            pytest.skip("one process owns a SQLite database")
        other = Platform(sample.settings, [], specs=list(sample.specs), run_workers=False)
        await other.start()
        body = {**NOTE, "text": "held"}
        sample_app.gate["held"] = asyncio.Event()
        sample_app.arrived["held"] = asyncio.Event()
        try:
            first = asyncio.create_task(
                client.post(NOTES, json=body, headers=headers(admin_token, "k-twice"))
            )
            await asyncio.wait_for(sample_app.arrived["held"].wait(), timeout=10)
            async with http_client(other) as other_client:
                second = await asyncio.wait_for(
                    other_client.post(NOTES, json=body, headers=headers(admin_token, "k-twice")),
                    timeout=10,
                )
                sample_app.gate["held"].set()
                first_response = await asyncio.wait_for(first, timeout=10)
                third = await other_client.post(
                    NOTES, json=body, headers=headers(admin_token, "k-twice")
                )
        finally:
            sample_app.gate["held"].set()
            await other.stop()

        assert second.status_code == 409, second.text
        assert second.json()["code"] == "idempotency_request_in_progress"
        assert first_response.status_code == 201, first_response.text
        assert third.headers["idempotent-replayed"] == "true"
        assert third.json() == first_response.json()
        assert await note_count(sample) == 1


class TestKeyedRequest:
    """The store's side of a key held in a transaction shared with other requests' work
    (kernel/fastpath.py's `keyed` handlers): looked up first, then held and completed in
    the work's transaction. Two transactions on their own connections stand for two
    processes: the advisory lock is the connection's, not the process's."""

    ANSWER = StoredResponse(200, {"content-type": "application/json"}, b'{"decided":true}')

    async def test_the_answer_commits_with_the_work_and_is_looked_up_after(
        self, sample: Platform
    ) -> None:
        runtime = runtime_of(sample)
        store = runtime.idempotency
        keyed = KeyedRequest(store, "client|usr_keyed", "k-commit", "fingerprint-1")
        async with runtime.database.transaction() as session:
            assert await keyed.hold(session) is None
            await keyed.complete(session, self.ANSWER)
            # Not yet committed: nothing to replay for anyone else.
            assert await store.lookup("client|usr_keyed", "k-commit", "fingerprint-1") is None
        assert await store.lookup("client|usr_keyed", "k-commit", "fingerprint-1") == self.ANSWER
        with pytest.raises(IdempotencyKeyReused):
            await store.lookup("client|usr_keyed", "k-commit", "fingerprint-2")
        assert await store.lookup("client|other", "k-commit", "fingerprint-1") is None

    async def test_rolled_back_work_leaves_the_key_free(self, sample: Platform) -> None:
        runtime = runtime_of(sample)
        keyed = KeyedRequest(runtime.idempotency, "client|usr_keyed", "k-rollback", "f")
        with pytest.raises(RuntimeError):
            async with runtime.database.transaction() as session:
                await keyed.hold(session)
                await keyed.complete(session, self.ANSWER)
                raise RuntimeError("the batch failed")
        assert await runtime.idempotency.lookup("client|usr_keyed", "k-rollback", "f") is None

    async def test_a_key_held_elsewhere_is_409_and_its_answer_replays_once_committed(
        self, sample: Platform
    ) -> None:
        runtime = runtime_of(sample)
        if not runtime.database.is_postgres:
            pytest.skip("one process owns a SQLite database: its running marker decides")
        keyed = KeyedRequest(runtime.idempotency, "client|usr_keyed", "k-held", "f")
        async with runtime.database.transaction() as first:
            assert await keyed.hold(first) is None
            with pytest.raises(IdempotencyRequestInProgress):
                async with runtime.database.transaction() as second:
                    await keyed.hold(second)
            await keyed.complete(first, self.ANSWER)
        # A request that looked the key up before that commit, and holds it only now, gets
        # the stored answer instead of deciding again.
        async with runtime.database.transaction() as late:
            assert await keyed.hold(late) == self.ANSWER

    async def test_a_batch_of_keys_is_held_and_completed_each_as_alone(
        self, sample: Platform
    ) -> None:
        """`hold_all` / `complete_all` (a group commit's batch, in a few statements on
        PostgreSQL) answer each key as `hold` / `complete` would: a new key is free, a
        completed one replays, another request under a completed key is 422, and on
        PostgreSQL a key held by another transaction is 409; each refusal in its place,
        the others unaffected. Binary bodies and headers are stored exactly."""
        runtime = runtime_of(sample)
        store, scope = runtime.idempotency, "client|usr_batch"
        done = KeyedRequest(store, scope, "b-done", "f-done")
        body = bytes(range(256)) + "é\x00".encode()
        answer = StoredResponse(201, {"content-type": "application/json", "location": "/x"}, body)
        async with runtime.database.transaction() as session:
            await KeyedRequest.complete_all(session, [(done, answer)])
        assert await store.lookup(scope, "b-done", "f-done") == answer

        fresh = KeyedRequest(store, scope, "b-fresh", "f")
        reused = KeyedRequest(store, scope, "b-done", "another request")
        held_elsewhere = KeyedRequest(store, scope, "b-held", "f")
        batch = [fresh, done, reused]
        async with contextlib.AsyncExitStack() as stack:
            if runtime.database.is_postgres:
                other = await stack.enter_async_context(runtime.database.transaction())
                assert await held_elsewhere.hold(other) is None
                batch.append(held_elsewhere)
            async with runtime.database.transaction() as session:
                claims = await KeyedRequest.hold_all(session, batch)
                assert claims[0] is None
                if runtime.database.is_postgres:
                    # On SQLite the look-up before the work answers these (`lookup`).
                    assert claims[1] == answer
                    assert isinstance(claims[2], IdempotencyKeyReused)
                    assert isinstance(claims[3], IdempotencyRequestInProgress)
                else:
                    assert claims == [None, None, None]
                await KeyedRequest.complete_all(session, [(fresh, self.ANSWER)])
        assert await store.lookup(scope, "b-fresh", "f") == self.ANSWER
        assert await store.lookup(scope, "b-done", "f-done") == answer  # not overwritten

    async def test_a_batch_of_one_key_is_answered_as_alone(self, sample: Platform) -> None:
        """A batch of one key takes the single-key look-up (the batch's statement is only
        for several): a new key is free, a completed one replays, another request under it
        is 422, as `hold` answers."""
        runtime = runtime_of(sample)
        store, scope = runtime.idempotency, "client|usr_one"
        done = KeyedRequest(store, scope, "o-done", "f-done")
        async with runtime.database.transaction() as session:
            await KeyedRequest.complete_all(session, [(done, self.ANSWER)])
        for keyed, expected in (
            (KeyedRequest(store, scope, "o-fresh", "f"), None),
            (done, self.ANSWER),
            (KeyedRequest(store, scope, "o-done", "another request"), IdempotencyKeyReused),
        ):
            async with runtime.database.transaction() as session:
                (claim,) = await KeyedRequest.hold_all(session, [keyed])
            if not runtime.database.is_postgres:
                assert claim is None  # on SQLite the look-up before the work answers
            elif isinstance(expected, type):
                assert isinstance(claim, expected)
            else:
                assert claim == expected

    async def test_the_batch_look_up_is_planned_on_the_primary_key(self, sample: Platform) -> None:
        """PostgreSQL keeps a statement's generic plan for the connection's life, whatever
        the table grows to. The plan made for the batch look-up on a new, never analysed,
        table (a copy of the records' table) must still go through the primary key: as a
        plain join it was a sequential scan of the whole table (23 ms a call at 200,000
        records)."""
        runtime = runtime_of(sample)
        if not runtime.database.is_postgres:
            pytest.skip("PostgreSQL's plan cache")
        store = runtime.idempotency
        sql = store._find_many.compiled(runtime.database.engine.dialect).sql
        probe = sql.replace(store.table.name, "pg_temp.probe_records")
        assert probe != sql
        async with runtime.database.engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            async with driver.transaction():  # the driver's own: none was begun above it
                await driver.execute(
                    f"CREATE TEMP TABLE probe_records (LIKE {store.table.name} INCLUDING ALL) "
                    "ON COMMIT DROP"
                )
                await driver.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                await driver.execute(f"PREPARE batch_look_up(text[], text[]) AS {probe}")
                rows = await driver.fetch("EXPLAIN EXECUTE batch_look_up(ARRAY['s'], ARRAY['k'])")
                await driver.execute("DEALLOCATE batch_look_up")
        plan = "\n".join(row[0] for row in rows)
        assert "Index Scan" in plan, plan
        assert "Seq Scan" not in plan, plan


class TestIdempotencyScope:
    async def test_keys_are_scoped_per_caller(
        self, sample: Platform, client: httpx.AsyncClient
    ) -> None:
        alice = sample.tokens.issue("usr_alice", roles=["customer"])
        bob = sample.tokens.issue("usr_bob", roles=["customer"])

        first = await client.post(NOTES, json=NOTE, headers=headers(alice, "k-shared"))
        second = await client.post(NOTES, json=NOTE, headers=headers(bob, "k-shared"))

        assert first.status_code == 201
        assert second.status_code == 201
        assert "idempotent-replayed" not in second.headers
        assert first.json()["id"] != second.json()["id"]
        assert await note_count(sample) == 2

    async def test_a_new_token_for_the_same_caller_replays(
        self, sample: Platform, client: httpx.AsyncClient
    ) -> None:
        morning = sample.tokens.issue("usr_alice", roles=["customer"])
        evening = sample.tokens.issue("usr_alice", roles=["customer"])
        assert morning != evening

        first = await client.post(NOTES, json=NOTE, headers=headers(morning, "k-alice"))
        second = await client.post(NOTES, json=NOTE, headers=headers(evening, "k-alice"))

        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()


class TestIdempotencyOutcomes:
    async def test_a_4xx_outcome_is_stored_and_replayed(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        body = {**NOTE, "fail": True}
        first = await client.post(NOTES, json=body, headers=headers(admin_token, "k-4xx"))
        second = await client.post(NOTES, json=body, headers=headers(admin_token, "k-4xx"))

        assert first.status_code == 409
        assert first.json()["code"] == "note_rejected"
        assert second.status_code == 409
        assert second.headers["idempotent-replayed"] == "true"
        assert second.headers["content-type"] == "application/problem+json"
        assert second.content == first.content
        assert await note_count(sample) == 0
        records = await table_rows(sample, "idempotency_record")
        assert [(row["state"], row["response_status"]) for row in records] == [("completed", 409)]

    async def test_an_unhandled_5xx_releases_the_key_so_a_retry_runs(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        body = {**NOTE, "text": "crashy"}
        sample_app.crash_once.add("crashy")

        first = await client.post(NOTES, json=body, headers=headers(admin_token, "k-5xx"))
        assert first.status_code == 500
        assert await note_count(sample) == 0
        assert await table_rows(sample, "idempotency_record") == []

        retry = await client.post(NOTES, json=body, headers=headers(admin_token, "k-5xx"))
        assert retry.status_code == 201, retry.text
        assert "idempotent-replayed" not in retry.headers
        assert await note_count(sample) == 1


class TestIdempotencyExpiry:
    async def test_an_expired_record_is_treated_as_new(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        first = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-old"))
        runtime = runtime_of(sample)
        table = runtime.tables.idempotency
        async with runtime.database.transaction() as session:
            await session.execute(
                update(table).values(expires_at=utcnow() - dt.timedelta(seconds=1))
            )

        second = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-old"))

        assert second.status_code == 201
        assert "idempotent-replayed" not in second.headers
        assert second.json()["id"] != first.json()["id"]
        assert await note_count(sample) == 2

    async def test_records_are_kept_at_least_24_hours(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-kept"))

        [record] = await table_rows(sample, "idempotency_record")
        assert record["key"] == "k-kept"
        assert record["expires_at"] - record["created_at"] >= dt.timedelta(hours=24)

    async def test_purge_removes_only_expired_records(self, idle_sample: Platform) -> None:
        # Without background workers: the scheduler's own purge job would race this one.
        sample = idle_sample
        admin_token = sample.tokens.issue("usr_admin", roles=["admin"])
        async with http_client(sample) as client:
            await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-expired"))
            await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k-fresh"))
        runtime = runtime_of(sample)
        table = runtime.tables.idempotency
        async with runtime.database.transaction() as session:
            await session.execute(
                update(table)
                .where(table.c.key == "k-expired")
                .values(expires_at=utcnow() - dt.timedelta(seconds=1))
            )

        purged = await runtime.idempotency.purge_expired()

        assert purged == 1
        assert [row["key"] for row in await table_rows(sample, "idempotency_record")] == ["k-fresh"]


class TestIdempotencyKeyFormat:
    async def test_a_key_with_spaces_is_400(
        self, sample: Platform, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "bad key"))

        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_idempotency_key"
        assert await note_count(sample) == 0

    async def test_a_key_longer_than_255_characters_is_400(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k" * 256))

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_idempotency_key"

    async def test_an_empty_key_is_400(self, client: httpx.AsyncClient, admin_token: str) -> None:
        response = await client.post(NOTES, json=NOTE, headers=headers(admin_token, ""))

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_idempotency_key"

    async def test_a_255_character_key_is_accepted(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(NOTES, json=NOTE, headers=headers(admin_token, "k" * 255))

        assert response.status_code == 201
