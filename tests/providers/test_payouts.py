"""Payout instructions against the partner-bank simulator over real HTTP: settled, rejected
with the bank's reason, timed out, settled later by the bank's signed callback; duplicate,
out-of-order, forged and stale statuses change nothing; a resubmission after a crash is the
same instruction at the bank."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from paymesh.kernel.config import Settings
from paymesh.kernel.errors import RemoteServiceError
from paymesh.providers.client import BeneficiaryValidation, HttpProviders
from paymesh.providers.connectors.bank import callback_path
from paymesh.providers.iso20022 import StatusReport, build_pacs002
from paymesh.providers.models import PayoutInstruction
from paymesh.providers.payouts.schemas import PayoutCreate
from paymesh.providers.payouts.service import Payouts
from tests.engine_statements import engine_statements
from tests.providers.test_payouts_support import (
    BANK,
    NEVER_ANSWERS,
    REJECTS_AC01,
    REJECTS_AC04,
    SETTLES_LATER,
    PayoutWorld,
    bank_instructions,
    payout_body,
    payout_events,
    payout_of,
    payout_reaches,
    payout_world,
    serve_world,
    signed,
    submit,
)

__all__ = ["payout_world"]


def status_report(payout: dict[str, Any], status: str, reason: str | None = None) -> bytes:
    """A pacs.002 as the bank would send it about `payout`."""
    return build_pacs002(
        StatusReport(
            message_id=f"TEST-{status}-{payout['end_to_end_id']}"[:35],
            original_message_id=payout["message_id"],
            original_end_to_end_id=payout["end_to_end_id"],
            status=status,
            reason_code=reason,
            reason_text="Incorrect account number" if reason else None,
            created_at=dt.datetime.now(dt.UTC),
        )
    )


async def post_status(
    world: PayoutWorld, body: bytes, headers: dict[str, str], bank: str = BANK
) -> Any:
    """Like the bank: plain HTTP to the public callback route, no token."""
    return await world.http.post(callback_path(bank), content=body, headers=headers)


class TestSubmitPayout:
    async def test_a_payout_the_bank_settles_at_once(self, payout_world: PayoutWorld) -> None:
        response = await submit(payout_world, payout_body("pay_settles"))
        assert response.status_code == 201, response.text
        assert response.json()["end_to_end_id"] == "E-pay_settles"

        payout = await payout_reaches(payout_world, "pay_settles", "settled")

        assert payout["reason_code"] is None
        assert payout["history"][-1]["bank_status"] in ("ACSC", "ACCC")
        events = await payout_events(payout_world)
        assert [event["type"] for event in events] == ["providers.payout.settled"], events
        assert events[0]["data"] == {
            "payment_id": "pay_settles",
            "instruction_id": payout["id"],
            "bank": BANK,
            "status": "settled",
            "reason_code": None,
            "reason_text": None,
        }
        assert len(await bank_instructions(payout_world)) == 1

    @pytest.mark.parametrize(("iban", "reason"), [(REJECTS_AC01, "AC01"), (REJECTS_AC04, "AC04")])
    async def test_a_payout_the_bank_rejects_carries_its_reason(
        self, payout_world: PayoutWorld, iban: str, reason: str
    ) -> None:
        response = await submit(payout_world, payout_body("pay_rejected", iban))
        assert response.status_code == 201, response.text

        payout = await payout_reaches(payout_world, "pay_rejected", "rejected")

        assert payout["reason_code"] == reason
        assert payout["reason_text"]
        events = await payout_events(payout_world)
        assert [event["type"] for event in events] == ["providers.payout.rejected"]
        assert events[0]["data"]["reason_code"] == reason

    async def test_a_payout_settled_later_arrives_by_the_banks_callback(
        self, payout_world: PayoutWorld
    ) -> None:
        response = await submit(payout_world, payout_body("pay_later", SETTLES_LATER))
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "submitted"

        payout = await payout_reaches(payout_world, "pay_later", "settled")

        # Polling is 30 s away in this world: only the callback can have settled it.
        assert payout["history"][0]["source"] == "answer"
        assert payout["history"][-1]["source"] == "callback"
        assert [event["type"] for event in await payout_events(payout_world)] == [
            "providers.payout.settled"
        ]

    async def test_the_same_payment_again_is_the_same_instruction(
        self, payout_world: PayoutWorld
    ) -> None:
        first = await submit(payout_world, payout_body("pay_twice"))
        again = await submit(payout_world, payout_body("pay_twice"))
        other = await submit(payout_world, payout_body("pay_twice", amount=99))

        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        assert other.status_code == 409
        assert other.json()["code"] == "payout_conflict"
        await payout_reaches(payout_world, "pay_twice", "settled")
        assert len(await bank_instructions(payout_world)) == 1

    async def test_an_unsupported_currency_is_refused_before_anything_is_sent(
        self, payout_world: PayoutWorld
    ) -> None:
        response = await submit(payout_world, payout_body("pay_yen", currency="JPY"))

        assert response.status_code == 422
        assert response.json()["code"] == "unsupported_currency"
        assert await bank_instructions(payout_world) == []


async def record_without_sending(world: PayoutWorld, payment_id: str) -> dict[str, Any]:
    """What a crash right after the `submitting` commit leaves: the row, nothing sent."""
    payouts: Payouts = world.platform.runtimes["providers"].state["payouts"]
    await payouts.record("service-payments", PayoutCreate.model_validate(payout_body(payment_id)))
    payout = await payout_of(world, payment_id)
    assert payout["status"] == "submitting"
    return payout


async def deliver_stored_message(
    world: PayoutWorld, payment_id: str, *, past_its_deadline: bool = False
) -> None:
    """Hand the bank the instruction's stored pacs.008 ourselves, its answer unseen by
    providers; `past_its_deadline` also marks it submitted with its deadline gone by."""
    runtime = world.platform.runtimes["providers"]
    async with runtime.database.transaction() as session:
        row = await session.get(PayoutInstruction, (await payout_of(world, payment_id))["id"])
        assert row is not None
        message = row.message.encode()
        if past_its_deadline:
            past = row.created_at - dt.timedelta(seconds=1)
            row.status, row.deadline_at, row.next_poll_at = "submitted", past, past
    delivered = await world.bank.post(
        "/pacs008", content=message, headers={"content-type": "application/xml"}
    )
    assert delivered.status_code == 200


class TestResubmissionAfterACrash:
    async def test_resubmitting_a_submitting_instruction_sends_it(
        self, payout_world: PayoutWorld
    ) -> None:
        await record_without_sending(payout_world, "pay_crashed")
        assert await bank_instructions(payout_world) == []

        # As the providers client sends it: with the payment id as Idempotency-Key.
        again = await payout_world.http.post(
            "/v1/providers/payouts",
            json=payout_body("pay_crashed"),
            headers={**payout_world.headers, "idempotency-key": "pay_crashed"},
        )

        assert again.status_code == 200, again.text
        await payout_reaches(payout_world, "pay_crashed", "settled")
        assert len(await bank_instructions(payout_world)) == 1

    async def test_a_message_the_bank_already_has_is_not_a_second_instruction(
        self, payout_world: PayoutWorld
    ) -> None:
        """The crash came after the bank got the message and before its answer was kept."""
        await record_without_sending(payout_world, "pay_sent_once")
        await deliver_stored_message(payout_world, "pay_sent_once")

        again = await submit(payout_world, payout_body("pay_sent_once"))

        assert again.status_code == 200, again.text
        await payout_reaches(payout_world, "pay_sent_once", "settled")
        assert len(await bank_instructions(payout_world)) == 1
        assert len(await payout_events(payout_world)) == 1


def only_polling(
    make_platform: Callable[..., Any], settings: Settings, *, run_workers: bool
) -> AsyncIterator[PayoutWorld]:
    """The bank's callbacks go nowhere and it gives up quickly: only polling finds statuses."""
    return serve_world(
        make_platform,
        settings,
        bank_fields={"poll_interval_seconds": 0.2, "status_timeout_seconds": 3.0},
        simulator_fields={"callback_url": "http://127.0.0.1:1/nowhere"},
        run_workers=run_workers,
    )


@pytest.fixture
async def polling_world(
    make_platform: Callable[..., Any], settings: Settings
) -> AsyncIterator[PayoutWorld]:
    async for world in only_polling(make_platform, settings, run_workers=True):
        yield world


@pytest.fixture
async def idle_polling_world(
    make_platform: Callable[..., Any], settings: Settings
) -> AsyncIterator[PayoutWorld]:
    """Without workers: the test runs the polling job's rounds itself."""
    async for world in only_polling(make_platform, settings, run_workers=False):
        yield world


class TestPolling:
    async def test_polling_finds_a_delayed_settlement(self, polling_world: PayoutWorld) -> None:
        await submit(polling_world, payout_body("pay_polled", SETTLES_LATER))

        payout = await payout_reaches(polling_world, "pay_polled", "settled")

        assert payout["history"][-1]["source"] == "poll"

    async def test_the_job_resends_an_instruction_left_submitting(
        self, polling_world: PayoutWorld
    ) -> None:
        await record_without_sending(polling_world, "pay_orphan")

        await payout_reaches(polling_world, "pay_orphan", "settled")

        assert len(await bank_instructions(polling_world)) == 1

    async def test_an_unanswered_payout_times_out_and_a_late_status_changes_nothing(
        self, polling_world: PayoutWorld
    ) -> None:
        await submit(polling_world, payout_body("pay_silent", NEVER_ANSWERS))

        payout = await payout_reaches(polling_world, "pay_silent", "timed_out", 10.0)
        late = status_report(payout, "ACSC")
        answer = await post_status(polling_world, late, signed(late))
        replay = await post_status(polling_world, late, signed(late))

        assert (answer.status_code, replay.status_code) == (200, 200)
        after = await payout_of(polling_world, "pay_silent")
        assert after["status"] == "timed_out"
        assert [entry["late"] for entry in after["history"]] == [False, True]
        events = await payout_events(polling_world)
        assert [event["type"] for event in events] == ["providers.payout.timed_out"]

    async def test_a_settlement_that_crossed_the_deadline_is_found_by_a_last_ask(
        self, idle_polling_world: PayoutWorld
    ) -> None:
        """The bank settled, but its answer never reached us before the deadline: the job
        asks once more before giving up, and the payout settles instead of timing out. (No
        workers: the test runs the polling job's round itself.)"""
        world = idle_polling_world
        await record_without_sending(world, "pay_crossed")
        await deliver_stored_message(world, "pay_crossed", past_its_deadline=True)
        payouts: Payouts = world.platform.runtimes["providers"].state["payouts"]

        assert await payouts.poll_due() == 1

        payout = await payout_of(world, "pay_crossed")
        assert payout["status"] == "settled"
        assert payout["history"][-1]["source"] == "poll"
        events = await payout_events(world)
        assert [event["type"] for event in events] == ["providers.payout.settled"]

    async def test_a_round_with_nothing_due_opens_no_transaction(
        self, idle_polling_world: PayoutWorld
    ) -> None:
        """The job runs every second; most rounds find nothing due, and ask only on the
        direct read path (kernel/db.py: any_due), not with a claim's transaction."""
        world = idle_polling_world
        await record_without_sending(world, "pay_not_yet")  # submitting, but not due yet
        runtime = world.platform.runtimes["providers"]
        async with runtime.database.transaction() as session:
            instruction = await session.get(
                PayoutInstruction, (await payout_of(world, "pay_not_yet"))["id"]
            )
            assert instruction is not None
            instruction.next_poll_at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        with engine_statements(runtime.database) as statements:
            assert await runtime.state["payouts"].poll_due() == 0

        assert statements == []
        assert (await payout_of(world, "pay_not_yet"))["status"] == "submitting"

    async def test_a_last_answer_about_another_message_times_out_and_the_round_goes_on(
        self, idle_polling_world: PayoutWorld, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past its deadline, the bank's last answer names another message: that is no
        answer to this instruction, so it times out (its funds are released), and the
        polling round still asks about the other due instruction."""
        world = idle_polling_world
        await record_without_sending(world, "pay_mismatched")
        await deliver_stored_message(world, "pay_mismatched", past_its_deadline=True)
        await record_without_sending(world, "pay_still_due")
        await deliver_stored_message(world, "pay_still_due")
        runtime = world.platform.runtimes["providers"]
        async with runtime.database.transaction() as session:
            due = await session.get(
                PayoutInstruction, (await payout_of(world, "pay_still_due"))["id"]
            )
            assert due is not None
            due.status, due.next_poll_at = "submitted", due.created_at
        payouts: Payouts = runtime.state["payouts"]
        payout = await payout_of(world, "pay_mismatched")
        mismatched = payout["end_to_end_id"]
        bank = payouts.banks.get(payout["bank"])
        asked = bank.status

        async def answering_about_another_message(end_to_end_id: str) -> StatusReport:
            report: StatusReport = await asked(end_to_end_id)
            if end_to_end_id != mismatched:
                return report
            return dataclasses.replace(report, original_message_id="MSG-SOMEONE-ELSE")

        monkeypatch.setattr(bank, "status", answering_about_another_message)

        assert await payouts.poll_due() == 2

        assert (await payout_of(world, "pay_mismatched"))["status"] == "timed_out"
        assert (await payout_of(world, "pay_still_due"))["status"] == "settled"
        events = sorted(event["type"] for event in await payout_events(world))
        assert events == ["providers.payout.settled", "providers.payout.timed_out"]


class TestBankCallbacks:
    async def waiting(self, world: PayoutWorld) -> dict[str, Any]:
        response = await submit(world, payout_body("pay_waiting", NEVER_ANSWERS))
        assert response.status_code == 201, response.text
        return await payout_reaches(world, "pay_waiting", "submitted")

    async def test_duplicate_and_out_of_order_statuses_change_nothing(
        self, payout_world: PayoutWorld
    ) -> None:
        payout = await self.waiting(payout_world)
        settled = status_report(payout, "ACSC")
        assert (await post_status(payout_world, settled, signed(settled))).status_code == 200
        before = await payout_of(payout_world, "pay_waiting")

        for body in (
            settled,
            status_report(payout, "PDNG"),
            status_report(payout, "ACSP"),
            status_report(payout, "RJCT", "AC04"),
        ):
            response = await post_status(payout_world, body, signed(body))
            assert response.status_code == 200, response.text
            assert response.json()["payout_status"] == "settled"

        assert await payout_of(payout_world, "pay_waiting") == before
        assert before["status"] == "settled"
        assert [event["type"] for event in await payout_events(payout_world)] == [
            "providers.payout.settled"
        ]

    @pytest.mark.parametrize(
        ("headers_for", "code"),
        [
            (lambda body: signed(body, secret="not-the-banks-secret"), "invalid_bank_signature"),
            (lambda body: {"content-type": "application/xml"}, "invalid_bank_signature"),
            (lambda body: signed(body + b" "), "invalid_bank_signature"),
            (lambda body: signed(body, timestamp=_now() - 301), "bank_signature_expired"),
            (lambda body: signed(body, timestamp=_now() + 301), "bank_signature_expired"),
        ],
    )
    async def test_a_forged_or_stale_status_is_refused_and_changes_nothing(
        self,
        payout_world: PayoutWorld,
        headers_for: Callable[[bytes], dict[str, str]],
        code: str,
    ) -> None:
        payout = await self.waiting(payout_world)
        body = status_report(payout, "RJCT", "AC01")

        response = await post_status(payout_world, body, headers_for(body))

        assert response.status_code == 401
        assert response.json()["code"] == code
        assert await payout_of(payout_world, "pay_waiting") == payout
        assert await payout_events(payout_world) == []

    async def test_an_unknown_bank_a_bad_body_or_an_unknown_instruction_is_refused(
        self, payout_world: PayoutWorld
    ) -> None:
        payout = await self.waiting(payout_world)
        body = status_report(payout, "ACSC")
        stranger = status_report({**payout, "end_to_end_id": "E-pay_nobody"}, "ACSC")
        not_xml = b"<Document><oops"
        entity = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "y">]><d>&x;</d>'

        unknown_bank = await post_status(payout_world, body, signed(body), bank="other-bank")
        malformed = await post_status(payout_world, not_xml, signed(not_xml))
        with_entity = await post_status(payout_world, entity, signed(entity))
        unknown = await post_status(payout_world, stranger, signed(stranger))

        assert (unknown_bank.status_code, unknown_bank.json()["code"]) == (404, "bank_not_found")
        assert (malformed.status_code, malformed.json()["code"]) == (400, "malformed_bank_message")
        assert with_entity.status_code == 400
        assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_payout_instruction")
        assert await payout_of(payout_world, "pay_waiting") == payout


def _now() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())


class TestProvidersClient:
    async def test_another_service_validates_submits_and_reads_through_the_client(
        self, payout_world: PayoutWorld
    ) -> None:
        client = HttpProviders(payout_world.platform.runtimes["providers"].client("providers"))
        try:
            validated = await client.validate_beneficiary(
                BeneficiaryValidation.model_validate(
                    {"currency": "EUR", "beneficiary": payout_body("x")["beneficiary"]}
                )
            )
            submitted = await client.submit_payout(
                PayoutCreate.model_validate(payout_body("pay_client"))
            )
            again = await client.submit_payout(
                PayoutCreate.model_validate(payout_body("pay_client"))
            )
            with pytest.raises(RemoteServiceError) as refused:
                await client.validate_beneficiary(
                    BeneficiaryValidation.model_validate(
                        {"currency": "JPY", "beneficiary": payout_body("x")["beneficiary"]}
                    )
                )
            read = await client.get_payout("pay_client")
        finally:
            await client.aclose()

        assert validated.bank == BANK
        assert again.id == submitted.id == read.id
        assert read.status == "settled"
        assert refused.value.remote_code == "unsupported_currency"
        assert len(await bank_instructions(payout_world)) == 1


BANK_CERTIFICATE_SHA256 = hashlib.sha256(b"the partner bank's client certificate (DER)").hexdigest()
MTLS_BANK = {"callback_auth": "mtls", "callback_certificate_sha256": BANK_CERTIFICATE_SHA256}


def behind_proxy(settings: Settings) -> Settings:
    """The gateway behind a TLS-terminating proxy on 127.0.0.1 (where the tests connect)."""
    gateway = settings.gateway.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]})
    return settings.model_copy(update={"gateway": gateway})


def client_certificate(sha256: str) -> dict[str, str]:
    """What the proxy forwards about the certificate it verified (Envoy's XFCC)."""
    return {
        "content-type": "application/xml",
        "x-forwarded-client-cert": f'Hash={sha256};Subject="CN=partner bank callbacks"',
    }


@pytest.fixture
async def mtls_callback_world(
    make_platform: Callable[..., Any], settings: Settings
) -> AsyncIterator[PayoutWorld]:
    async for world in serve_world(make_platform, behind_proxy(settings), bank_fields=MTLS_BANK):
        yield world


@pytest.fixture
async def mtls_callback_world_without_proxy(
    make_platform: Callable[..., Any], settings: Settings
) -> AsyncIterator[PayoutWorld]:
    async for world in serve_world(make_platform, settings, bank_fields=MTLS_BANK):
        yield world


class TestCallbacksAuthenticatedByClientCertificate:
    """`callback_auth: mtls`: the bank is known by its client certificate, which the proxy
    in front of the gateway verified; its HMAC signature is not what counts."""

    async def waiting(self, world: PayoutWorld) -> dict[str, Any]:
        response = await submit(world, payout_body("pay_mtls_cb", NEVER_ANSWERS))
        assert response.status_code == 201, response.text
        return await payout_reaches(world, "pay_mtls_cb", "submitted")

    async def test_the_banks_certificate_settles_it(self, mtls_callback_world: PayoutWorld) -> None:
        payout = await self.waiting(mtls_callback_world)
        body = status_report(payout, "ACSC")

        response = await post_status(
            mtls_callback_world, body, client_certificate(BANK_CERTIFICATE_SHA256.upper())
        )

        assert response.status_code == 200, response.text
        settled = await payout_of(mtls_callback_world, "pay_mtls_cb")
        assert settled["status"] == "settled"
        assert settled["history"][-1]["source"] == "callback"

    async def test_another_certificate_none_or_only_a_signature_is_refused(
        self, mtls_callback_world: PayoutWorld
    ) -> None:
        world = mtls_callback_world
        payout = await self.waiting(world)
        body = status_report(payout, "RJCT", "AC01")
        other = hashlib.sha256(b"someone else's certificate").hexdigest()

        attempts = [
            client_certificate(other),
            {"content-type": "application/xml"},
            signed(body),  # a valid HMAC does not replace the certificate
            client_certificate("") | {"x-forwarded-client-cert": 'Subject="CN=x"'},
        ]
        for headers in attempts:
            response = await post_status(world, body, headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["code"] == "invalid_bank_signature"
        assert await payout_of(world, "pay_mtls_cb") == payout
        assert await payout_events(world) == []

    async def test_a_client_cannot_claim_a_certificate_past_an_untrusting_gateway(
        self, mtls_callback_world_without_proxy: PayoutWorld
    ) -> None:
        world = mtls_callback_world_without_proxy
        payout = await self.waiting(world)
        body = status_report(payout, "ACSC")

        # The right fingerprint, but not from a trusted proxy: the gateway drops the header.
        response = await post_status(world, body, client_certificate(BANK_CERTIFICATE_SHA256))

        assert response.status_code == 401, response.text
        assert await payout_of(world, "pay_mtls_cb") == payout
