"""Out-of-band one-time codes: identity issues a code, has it delivered, keeps only its
HMAC, and verifies guesses once, with a bounded number of wrong tries, even when the
tries race. Every request goes through the platform's gateway with identity's tokens: a
`service` client's client-credentials token, customers' and staff's tokens. Delivery is
a recording `CodeDelivery` (the end-to-end test with notifications lives with it); the
HTTP delivery is checked against a stand-in notifications answering over httpx."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from structlog.testing import capture_logs

from paymesh.identity.otp.service import (
    CodeDeliveryError,
    CodeHasher,
    CodeMessage,
    HttpCodeDelivery,
    OneTimeCodes,
    new_code,
)
from paymesh.kernel.config import Settings
from paymesh.kernel.db import utcnow
from paymesh.kernel.http import ServiceClient
from paymesh.platform import Platform
from tests import tokens
from tests.conftest import _drop_schemas, http_client
from tests.identity import factories

pytestmark = pytest.mark.asyncio(loop_scope="module")

CODES = "/v1/identity/one-time-codes"
PROBLEM = "application/problem+json"
_numbers = itertools.count()


@dataclass
class RecordingDelivery:
    """Stands in for notifications: records each message, or fails when told to."""

    messages: list[CodeMessage] = field(default_factory=list)
    failure: str | None = None

    async def deliver(self, message: CodeMessage) -> None:
        if self.failure is not None:
            raise CodeDeliveryError(self.failure)
        self.messages.append(message)

    def code_for(self, code_id: str) -> str:
        return next(message.code for message in self.messages if message.otp_id == code_id)


@dataclass
class World:
    platform: Platform
    http: httpx.AsyncClient
    delivery: RecordingDelivery
    service: dict[str, str]

    @property
    def codes(self) -> OneTimeCodes:
        codes: OneTimeCodes = self.platform.runtimes["identity"].state["one_time_codes"]
        return codes

    async def user(self, **fields: Any) -> str:
        """A fresh active customer with an email and a phone (so no test's codes count
        against another's rate limit)."""
        number = next(_numbers)
        defaults = {"email": f"otp{number}@example.com", "phone": f"+4479460{number:05d}"}
        created = await factories.create_user(
            self.platform, f"otpuser{number}", **{**defaults, **fields}
        )
        return created.id

    def bearer(self, subject: str, *roles: str) -> dict[str, str]:
        token = self.platform.tokens.issue(subject, roles=roles)
        return {"authorization": f"Bearer {token}"}

    async def issue(self, user_id: str, purpose: str = "payment:pay_01", **body: Any) -> Any:
        response = await self.http.post(
            CODES, json={"user_id": user_id, "purpose": purpose, **body}, headers=self.service
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def verify(self, code_id: str, code: str, **body: Any) -> httpx.Response:
        return await self.http.post(
            f"{CODES}/{code_id}/verify", json={"code": code, **body}, headers=self.service
        )

    async def row(self, code_id: str) -> dict[str, Any]:
        async with self.platform.runtimes["identity"].database.transaction() as session:
            found = await session.execute(
                sa.text("SELECT * FROM identity_one_time_code WHERE id = :id"), {"id": code_id}
            )
            return dict(found.mappings().one())

    async def execute(self, statement: str, **parameters: Any) -> None:
        async with self.platform.runtimes["identity"].database.transaction() as session:
            await session.execute(sa.text(statement), parameters)

    async def events(self, event_type: str) -> list[dict[str, Any]]:
        runtime = self.platform.runtimes["identity"]
        table = runtime.spec.tables.outbox
        async with runtime.database.transaction() as session:
            rows = await session.execute(table.select().where(table.c.type == event_type))
            return [row.envelope for row in rows]


def wrong(code: str) -> str:
    """A code of the same length that is not `code`."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, Any] = response.json()
    assert document["code"] == code, document
    return document


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_world(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
) -> AsyncIterator[World]:
    settings = Settings(
        _env_file=None,
        env="test",
        data_dir=tmp_path_factory.mktemp("otp") / "var",
        database_url=postgres_database,
        access_log=False,
        public_url=factories.ISSUER,
        gateway={"rate_limits": False},
        events={
            "relay_interval_seconds": 0.05,
            "outbox_retention_seconds": 3600,
            "check_payloads": True,  # events fit what /asyncapi.json documents
        },
    )
    platform = Platform(settings, ["identity"])
    if postgres_database:
        await _drop_schemas(postgres_database, ["identity"])
    await platform.migrate()
    await platform.start()
    try:
        async with http_client(platform) as http:
            http.base_url = httpx.URL(factories.ISSUER)
            delivery = RecordingDelivery()
            platform.runtimes["identity"].state["one_time_codes"].delivery = delivery
            yield World(platform, http, delivery, await tokens.service_token(platform, http))
    finally:
        await platform.stop()
        if postgres_database:
            await _drop_schemas(postgres_database, ["identity"])


@pytest_asyncio.fixture(loop_scope="module")
async def world(shared_world: World) -> World:
    shared_world.delivery.messages.clear()
    shared_world.delivery.failure = None
    return shared_world


class TestIssueCode:
    async def test_the_delivered_message_carries_a_six_digit_code(self, world: World) -> None:
        user_id = await world.user()
        issued = await world.issue(user_id, "payment:pay_01abc", channel="sms")
        assert issued["id"].startswith("otp_")
        assert issued | {"id": None, "created_at": None, "expires_at": None} == {
            "id": None,
            "user_id": user_id,
            "purpose": "payment:pay_01abc",
            "channel": "sms",
            "status": "pending",
            "attempts_left": 5,
            "created_at": None,
            "expires_at": None,
            "used_at": None,
            "voided_at": None,
        }
        [message] = world.delivery.messages
        assert message.otp_id == issued["id"]
        assert message.user_id == user_id
        assert message.channel == "sms"
        assert message.purpose == "payment:pay_01abc"
        assert message.expires_in_minutes == 5
        assert re.fullmatch(r"[0-9]{6}", message.code)
        assert message.code not in repr(message)

    async def test_the_code_is_stored_nowhere_but_as_its_hmac(self, world: World) -> None:
        user_id = await world.user()
        with capture_logs() as logs:
            issued = await world.issue(user_id)
            code = world.delivery.code_for(issued["id"])
            response = await world.verify(issued["id"], code)
            assert response.status_code == 200, response.text
        row = await world.row(issued["id"])
        assert all(code not in str(value) for value in row.values()), row
        assert row["code_hash"] == CodeHasher(
            world.platform.settings.signing_secret.get_secret_value()
        ).hash(issued["id"], code)
        runtime = world.platform.runtimes["identity"]
        outbox = runtime.spec.tables.outbox
        async with runtime.database.transaction() as session:
            envelopes = [row.envelope for row in await session.execute(outbox.select())]
        assert code not in json.dumps(envelopes)
        assert row["code_hash"] not in json.dumps(envelopes)
        assert logs, "the issue and the verification are logged"
        assert code not in repr(logs)
        assert code not in response.text

    async def test_the_issued_event_names_the_code_without_it(self, world: World) -> None:
        user_id = await world.user()
        issued = await world.issue(user_id, "login", channel="email")
        [event] = [e for e in await world.events("identity.otp.issued") if e["subject"] == user_id]
        assert event["data"] == {
            "id": issued["id"],
            "user_id": user_id,
            "purpose": "login",
            "channel": "email",
            "expires_at": event["data"]["expires_at"],
        }
        assert event["actorroles"] == "service"

    async def test_a_new_code_voids_the_open_one_for_the_same_purpose(self, world: World) -> None:
        user_id = await world.user()
        first = await world.issue(user_id, "payment:pay_a")
        other = await world.issue(user_id, "payment:pay_b")
        second = await world.issue(user_id, "payment:pay_a")
        response = await world.verify(first["id"], world.delivery.code_for(first["id"]))
        assert_problem(response, 410, "code_voided")
        assert (await world.row(first["id"]))["void_reason"] == "replaced"
        assert (await world.http.get(f"{CODES}/{other['id']}", headers=world.service)).json()[
            "status"
        ] == "pending"
        response = await world.verify(second["id"], world.delivery.code_for(second["id"]))
        assert response.status_code == 200, response.text

    async def test_a_replay_by_idempotency_key_sends_no_second_code(self, world: World) -> None:
        user_id = await world.user()
        body = {"user_id": user_id, "purpose": "login"}
        headers = world.service | {"idempotency-key": f"otp-replay-{user_id}"}
        first = await world.http.post(CODES, json=body, headers=headers)
        again = await world.http.post(CODES, json=body, headers=headers)
        assert first.status_code == again.status_code == 201, again.text
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert len(world.delivery.messages) == 1

    async def test_too_many_codes_for_one_user_is_429(self, world: World) -> None:
        user_id = await world.user()
        for number in range(5):
            await world.issue(user_id, f"payment:pay_{number}")
        response = await world.http.post(
            CODES, json={"user_id": user_id, "purpose": "login"}, headers=world.service
        )
        assert_problem(response, 429, "too_many_codes")
        assert len(world.delivery.messages) == 5
        # Another user is not held back by this one.
        await world.issue(await world.user(), "login")

    async def test_codes_outside_the_window_do_not_count(self, world: World) -> None:
        user_id = await world.user()
        for number in range(5):
            await world.issue(user_id, f"payment:pay_{number}")
        await world.execute(
            "UPDATE identity_one_time_code SET created_at = :old WHERE user_id = :user",
            old=utcnow().replace(year=2020),
            user=user_id,
        )
        await world.issue(user_id, "login")

    async def test_failed_delivery_voids_the_code_and_is_503(self, world: World) -> None:
        user_id = await world.user()
        world.delivery.failure = "notifications answered 502 upstream_error"
        response = await world.http.post(
            CODES, json={"user_id": user_id, "purpose": "login"}, headers=world.service
        )
        document = assert_problem(response, 503, "code_delivery_failed")
        row = await world.row(document["id"])
        assert row["voided_at"] is not None
        assert row["void_reason"] == "delivery_failed"
        status = await world.http.get(f"{CODES}/{document['id']}", headers=world.service)
        assert status.json()["status"] == "void"
        issued = [e for e in await world.events("identity.otp.issued") if e["subject"] == user_id]
        assert issued == []

    async def test_unknown_user_is_404(self, world: World) -> None:
        response = await world.http.post(
            CODES,
            json={"user_id": "usr_01JD0000000000000000000000", "purpose": "login"},
            headers=world.service,
        )
        assert_problem(response, 404, "user_not_found")
        assert world.delivery.messages == []

    async def test_disabled_user_is_422(self, world: World) -> None:
        user_id = await world.user()
        await world.execute(
            "UPDATE identity_user SET status = 'disabled' WHERE id = :id", id=user_id
        )
        response = await world.http.post(
            CODES, json={"user_id": user_id, "purpose": "login"}, headers=world.service
        )
        assert_problem(response, 422, "user_disabled")
        assert world.delivery.messages == []

    async def test_a_channel_the_user_has_no_address_for_is_422(self, world: World) -> None:
        user_id = await world.user(phone=None)
        response = await world.http.post(
            CODES,
            json={"user_id": user_id, "purpose": "login", "channel": "sms"},
            headers=world.service,
        )
        assert_problem(response, 422, "channel_unavailable")
        await world.issue(user_id, "login", channel="email")


class TestVerifyCode:
    async def test_the_right_code_verifies_once(self, world: World) -> None:
        user_id = await world.user()
        issued = await world.issue(user_id, "payment:pay_01")
        code = world.delivery.code_for(issued["id"])
        response = await world.verify(issued["id"], code, purpose="payment:pay_01")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "id": issued["id"],
            "verified": True,
            "purpose": "payment:pay_01",
            "user_id": user_id,
        }
        assert_problem(await world.verify(issued["id"], code), 409, "code_used")
        status = await world.http.get(f"{CODES}/{issued['id']}", headers=world.service)
        assert status.json()["status"] == "used"
        [event] = [
            e["data"]
            for e in await world.events("identity.otp.verified")
            if e["subject"] == user_id
        ]
        assert event["id"] == issued["id"]
        assert code not in json.dumps(event)

    async def test_wrong_codes_count_down_then_lock(self, world: World) -> None:
        user_id = await world.user()
        issued = await world.issue(user_id)
        code = world.delivery.code_for(issued["id"])
        for left in (4, 3, 2, 1, 0):
            document = assert_problem(
                await world.verify(issued["id"], wrong(code)), 422, "invalid_code"
            )
            assert document["attempts_left"] == left
        # Locked: not even the right code is accepted now.
        assert_problem(await world.verify(issued["id"], code), 429, "code_locked")
        assert (await world.row(issued["id"]))["used_at"] is None
        status = await world.http.get(f"{CODES}/{issued['id']}", headers=world.service)
        assert status.json()["status"] == "locked"
        assert status.json()["attempts_left"] == 0
        locked = [e for e in await world.events("identity.otp.locked") if e["subject"] == user_id]
        assert len(locked) == 1

    async def test_a_wrong_guess_then_the_right_code_verifies(self, world: World) -> None:
        issued = await world.issue(await world.user())
        code = world.delivery.code_for(issued["id"])
        assert_problem(await world.verify(issued["id"], wrong(code)), 422, "invalid_code")
        response = await world.verify(issued["id"], code)
        assert response.status_code == 200, response.text

    async def test_concurrent_wrong_guesses_never_exceed_the_attempts(self, world: World) -> None:
        issued = await world.issue(await world.user())
        code = world.delivery.code_for(issued["id"])
        answers = await asyncio.gather(
            *(world.verify(issued["id"], wrong(code)) for _ in range(12))
        )
        codes = sorted(answer.json()["code"] for answer in answers)
        assert codes.count("invalid_code") == 5, codes
        assert codes.count("code_locked") == 7, codes
        left = sorted(a.json()["attempts_left"] for a in answers if a.status_code == 422)
        assert left == [0, 1, 2, 3, 4]
        assert (await world.row(issued["id"]))["attempts_left"] == 0
        assert_problem(await world.verify(issued["id"], code), 429, "code_locked")

    async def test_concurrent_right_codes_verify_exactly_once(self, world: World) -> None:
        issued = await world.issue(await world.user())
        code = world.delivery.code_for(issued["id"])
        answers = await asyncio.gather(*(world.verify(issued["id"], code) for _ in range(6)))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 409, 409, 409, 409, 409]

    async def test_an_expired_code_is_410(self, world: World) -> None:
        issued = await world.issue(await world.user())
        code = world.delivery.code_for(issued["id"])
        await world.execute(
            "UPDATE identity_one_time_code SET expires_at = :past WHERE id = :id",
            past=utcnow().replace(year=2020),
            id=issued["id"],
        )
        assert_problem(await world.verify(issued["id"], code), 410, "code_expired")
        row = await world.row(issued["id"])
        assert row["used_at"] is None and row["attempts_left"] == 5
        status = await world.http.get(f"{CODES}/{issued['id']}", headers=world.service)
        assert status.json()["status"] == "expired"

    async def test_a_code_for_another_purpose_is_refused(self, world: World) -> None:
        issued = await world.issue(await world.user(), "payment:pay_a")
        code = world.delivery.code_for(issued["id"])
        response = await world.verify(issued["id"], code, purpose="payment:pay_b")
        assert_problem(response, 422, "purpose_mismatch")
        row = await world.row(issued["id"])
        assert row["used_at"] is None and row["attempts_left"] == 5
        response = await world.verify(issued["id"], code, purpose="payment:pay_a")
        assert response.status_code == 200, response.text


class TestGetCode:
    async def test_ops_and_admin_read_the_state_without_the_hash(self, world: World) -> None:
        issued = await world.issue(await world.user(), channel="email")
        for role in ("ops", "admin"):
            response = await world.http.get(
                f"{CODES}/{issued['id']}", headers=world.bearer(f"usr_{role}", role)
            )
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "pending"
            assert "hash" not in response.text
            assert "code_hash" not in response.json()

    async def test_an_unknown_code_is_404(self, world: World) -> None:
        response = await world.http.get(
            f"{CODES}/otp_01JD0000000000000000000000", headers=world.service
        )
        assert_problem(response, 404, "one_time_code_not_found")


class TestAccess:
    async def test_a_customer_is_refused_on_every_route(self, world: World) -> None:
        user_id = await world.user()
        issued = await world.issue(user_id)
        code = world.delivery.code_for(issued["id"])
        customer = world.bearer(user_id, "customer")
        ops = world.bearer("usr_ops", "ops")
        # The gateway refuses a customer on the whole prefix; ops pass it to read a
        # code's state, and the routes themselves refuse them the rest.
        issue = ("POST", CODES, {"user_id": user_id, "purpose": "login"})
        verify = ("POST", f"{CODES}/{issued['id']}/verify", {"code": code})
        read = ("GET", f"{CODES}/{issued['id']}", None)
        attempts = [
            (*issue, customer, "insufficient_scope"),
            (*verify, customer, "insufficient_scope"),
            (*read, customer, "insufficient_scope"),
            (*issue, ops, "forbidden"),
            (*verify, ops, "forbidden"),
        ]
        for method, path, body, headers, refusal in attempts:
            response = await world.http.request(method, path, json=body, headers=headers)
            assert_problem(response, 403, refusal)
        assert len(world.delivery.messages) == 1
        row = await world.row(issued["id"])
        assert row["used_at"] is None and row["attempts_left"] == 5

    async def test_no_token_is_401(self, world: World) -> None:
        response = await world.http.post(CODES, json={"user_id": "x", "purpose": "login"})
        assert_problem(response, 401, "unauthenticated")


class TestHostileInput:
    @pytest.mark.parametrize(
        "body",
        [
            {"user_id": "usr_x", "purpose": "Payment"},
            {"user_id": "usr_x", "purpose": "p" * 65},
            {"user_id": "usr_x", "purpose": "login\n"},
            {"user_id": "usr_x", "purpose": "login", "channel": "pigeon"},
            {"user_id": "usr_x" * 100, "purpose": "login"},
            {"user_id": "usr_x\u0000", "purpose": "login"},
            {"user_id": "usr_x", "purpose": "login", "code": "123456"},
            {"user_id": ["usr_x"], "purpose": "login"},
            {"purpose": "login"},
        ],
    )
    async def test_a_malformed_issue_is_a_4xx_problem(
        self, world: World, body: dict[str, Any]
    ) -> None:
        response = await world.http.post(CODES, json=body, headers=world.service)
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == PROBLEM
        assert world.delivery.messages == []

    @pytest.mark.parametrize(
        "code",
        [
            "12345",
            "123456789",
            "12345a",
            "\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth digits
            "\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic digits
            "123456\n",
            "123 456",
            "9" * 100_000,
            "",
            123456,
            None,
        ],
    )
    async def test_a_malformed_guess_changes_nothing(self, world: World, code: Any) -> None:
        issued = await world.issue(await world.user())
        response = await world.verify(issued["id"], code)
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == PROBLEM
        row = await world.row(issued["id"])
        assert row["attempts_left"] == 5 and row["used_at"] is None

    @pytest.mark.parametrize(
        "code_id", ["otp_01JD0000000000000000000000", "x" * 500, "%00", "..", "otp_' OR 1=1 --"]
    )
    async def test_an_unknown_code_id_is_a_4xx_problem(self, world: World, code_id: str) -> None:
        response = await world.verify(code_id, "123456")
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == PROBLEM
        response = await world.http.get(f"{CODES}/{code_id}", headers=world.service)
        assert 400 <= response.status_code < 500, response.text


class TestCodes:
    async def test_codes_have_the_digits_asked_for_and_vary(self) -> None:
        for digits in (6, 7, 8):
            codes = {new_code(digits) for _ in range(200)}
            assert all(re.fullmatch(rf"[0-9]{{{digits}}}", code) for code in codes)
            assert len(codes) > 190

    async def test_the_hash_is_bound_to_the_code_id_and_the_key(self) -> None:
        hasher = CodeHasher("one secret")
        assert hasher.matches("otp_a", "123456", hasher.hash("otp_a", "123456"))
        assert not hasher.matches("otp_b", "123456", hasher.hash("otp_a", "123456"))
        assert not hasher.matches("otp_a", "123457", hasher.hash("otp_a", "123456"))
        assert CodeHasher("another").hash("otp_a", "123456") != hasher.hash("otp_a", "123456")


MESSAGE = CodeMessage(
    otp_id="otp_01JD0000000000000000000000",
    user_id="usr_01JD0000000000000000000000",
    purpose="payment:pay_01",
    channel="sms",
    expires_in_minutes=5,
    code="482913",
)


def notifications(status: int, answer: Any, seen: list[Any]) -> ServiceClient:
    """A ServiceClient whose transport answers as notifications would."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(status, json=answer)

    return ServiceClient("http://notifications.test", transport=httpx.MockTransport(handle))


class TestHttpCodeDelivery:
    async def test_posts_the_message_with_the_code_id_as_idempotency_key(self) -> None:
        seen: list[Any] = []
        client = notifications(202, {"notifications": [{"id": "ntf_1"}]}, seen)
        await HttpCodeDelivery(client).deliver(MESSAGE)
        await client.aclose()
        assert seen == [
            (
                "POST",
                "/v1/notifications/messages",
                {
                    "event_type": "identity.otp.issued",
                    "user_id": MESSAGE.user_id,
                    "data": {
                        "user_id": MESSAGE.user_id,
                        "code": "482913",
                        "purpose": "payment:pay_01",
                        "expires_in_minutes": 5,
                    },
                    "idempotency_key": MESSAGE.otp_id,
                    "channel": "sms",
                },
            )
        ]

    @pytest.mark.parametrize(
        ("status", "answer"),
        [
            (422, {"code": "unknown_event_type", "detail": "no"}),
            (500, {"code": "internal_error"}),
            (202, {"notifications": []}),
            (202, ["not", "an", "object"]),
        ],
    )
    async def test_a_refusal_is_a_delivery_error_without_the_code(
        self, status: int, answer: Any
    ) -> None:
        client = notifications(status, answer, [])
        with pytest.raises(CodeDeliveryError) as raised:
            await HttpCodeDelivery(client).deliver(MESSAGE)
        await client.aclose()
        assert MESSAGE.code not in str(raised.value)

    async def test_an_unreachable_notifications_is_a_delivery_error(self) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectTimeout("timed out", request=request)

        client = ServiceClient("http://notifications.test", transport=httpx.MockTransport(refuse))
        with pytest.raises(CodeDeliveryError):
            await HttpCodeDelivery(client).deliver(MESSAGE)
        await client.aclose()
