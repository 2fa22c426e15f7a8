"""The simulators speak their providers' protocols: checked here with plain HTTP and SMTP
clients, independently of the channels."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator

import aiosmtplib
import httpx
import pytest
from fastapi import FastAPI

from paymesh.notifications.simulators import (
    MailCatcher,
    PushSimulator,
    SmsSimulator,
    twilio_signature,
    verify_twilio_signature,
)
from tests.profiles.support import eventually, loopback_socket, serving, url_of

SID = "AC" + "1" * 32
TOKEN = "sms-token"
MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"

# Twilio's own SDK test vector (twilio-csharp RequestValidatorTest).
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


class TestTwilioSignature:
    def test_matches_twilios_published_vector(self) -> None:
        assert twilio_signature(DOC_URL, DOC_PARAMS, "12345") == DOC_SIGNATURE

    def test_matches_an_independent_computation(self) -> None:
        payload = "https://a.test/cb" + "AccountSidAC1" + "MessageStatussent"
        expected = base64.b64encode(
            hmac.new(b"tok", payload.encode(), hashlib.sha1).digest()
        ).decode()
        params = {"MessageStatus": "sent", "AccountSid": "AC1"}
        assert twilio_signature("https://a.test/cb", params, "tok") == expected

    def test_verify_accepts_the_genuine_signature(self) -> None:
        assert verify_twilio_signature(DOC_URL, DOC_PARAMS, DOC_SIGNATURE, "12345")

    def test_verify_refuses_tampering(self) -> None:
        tampered = {**DOC_PARAMS, "Digits": "9999"}
        assert not verify_twilio_signature(DOC_URL, tampered, DOC_SIGNATURE, "12345")
        assert not verify_twilio_signature(DOC_URL + "&x=1", DOC_PARAMS, DOC_SIGNATURE, "12345")
        assert not verify_twilio_signature(DOC_URL, DOC_PARAMS, DOC_SIGNATURE, "other")
        assert not verify_twilio_signature(DOC_URL, DOC_PARAMS, None, "12345")


@pytest.fixture
async def sms() -> AsyncIterator[tuple[SmsSimulator, httpx.AsyncClient]]:
    simulator = SmsSimulator(SID, TOKEN, callback_delay_seconds=0.01)
    sock = loopback_socket()
    async with serving(simulator.app(), sock), httpx.AsyncClient(base_url=url_of(sock)) as client:
        yield simulator, client
        await simulator.aclose()


class TestSmsSimulatorCreateMessage:
    async def test_answers_like_twilio_and_lists_it(
        self, sms: tuple[SmsSimulator, httpx.AsyncClient]
    ) -> None:
        _, client = sms
        response = await client.post(
            MESSAGES,
            data={"To": "+14155550100", "From": "+15005550006", "Body": "hi"},
            auth=(SID, TOKEN),
        )

        assert response.status_code == 201
        body = response.json()
        assert body["sid"].startswith("SM") and len(body["sid"]) == 34
        assert (body["status"], body["account_sid"], body["to"]) == ("queued", SID, "+14155550100")
        listed = (await client.get("/_simulator/messages")).json()
        assert [message["sid"] for message in listed] == [body["sid"]]

    async def test_wrong_credentials_answer_401_with_twilio_error(
        self, sms: tuple[SmsSimulator, httpx.AsyncClient]
    ) -> None:
        simulator, client = sms
        wrong = [httpx.BasicAuth(SID, "wrong"), httpx.BasicAuth("AC" + "2" * 32, TOKEN)]
        form = {"To": "+14155550100", "From": "+1500", "Body": "x"}
        for response in [
            *[await client.post(MESSAGES, data=form, auth=auth) for auth in wrong],
            await client.post(MESSAGES, data=form),
            await client.post(MESSAGES, data=form, headers={"authorization": "Basic !!"}),
        ]:
            assert response.status_code == 401
            assert response.json()["code"] == 20003
        assert not simulator.messages

    async def test_invalid_to_answers_21211(
        self, sms: tuple[SmsSimulator, httpx.AsyncClient]
    ) -> None:
        _, client = sms
        response = await client.post(
            MESSAGES, data={"To": "555-0100", "From": "+1500", "Body": "x"}, auth=(SID, TOKEN)
        )

        assert response.status_code == 400
        assert response.json()["code"] == 21211
        assert response.json()["more_info"] == "https://www.twilio.com/docs/errors/21211"

    async def test_fail_next_answers_the_status_once(
        self, sms: tuple[SmsSimulator, httpx.AsyncClient]
    ) -> None:
        simulator, client = sms
        simulator.fail_next(503)
        form = {"To": "+14155550100", "From": "+1500", "Body": "x"}
        first = await client.post(MESSAGES, data=form, auth=(SID, TOKEN))
        second = await client.post(MESSAGES, data=form, auth=(SID, TOKEN))

        assert (first.status_code, second.status_code) == (503, 201)

    async def test_callbacks_are_recorded_with_their_signature(
        self, sms: tuple[SmsSimulator, httpx.AsyncClient]
    ) -> None:
        simulator, client = sms
        receiver_sock = loopback_socket()
        url = url_of(receiver_sock) + "/cb"
        form = {"To": "+14155550000", "From": "+1500", "Body": "x", "StatusCallback": url}

        async with serving(FastAPI(), receiver_sock):  # answers 404: still recorded
            await client.post(MESSAGES, data=form, auth=(SID, TOKEN))

            async def two() -> bool:
                return len(simulator.callbacks) == 2

            await eventually(two, within_seconds=5)
        sent, failed = simulator.callbacks
        assert (sent.params["MessageStatus"], failed.params["MessageStatus"]) == ("sent", "failed")
        assert failed.params["ErrorCode"] == "30003"
        assert failed.status == 404
        assert verify_twilio_signature(url, failed.params, failed.signature, TOKEN)


@pytest.fixture
async def push() -> AsyncIterator[tuple[PushSimulator, httpx.AsyncClient]]:
    simulator = PushSimulator("demo", "bearer-1")
    sock = loopback_socket()
    async with (
        serving(simulator.app(), sock),
        httpx.AsyncClient(
            base_url=url_of(sock), headers={"authorization": "Bearer bearer-1"}
        ) as client,
    ):
        yield simulator, client


SEND = "/v1/projects/demo/messages:send"


class TestPushSimulatorSend:
    async def test_answers_a_message_name_and_lists_it(
        self, push: tuple[PushSimulator, httpx.AsyncClient]
    ) -> None:
        _, client = push
        response = await client.post(SEND, json={"message": {"token": "t1", "data": {"a": "b"}}})

        assert response.status_code == 200
        assert response.json()["name"].startswith("projects/demo/messages/")
        listed = (await client.get("/_simulator/messages")).json()
        assert listed[0]["message"]["token"] == "t1"

    async def test_missing_token_answers_401(
        self, push: tuple[PushSimulator, httpx.AsyncClient]
    ) -> None:
        simulator, client = push
        response = await client.post(
            SEND, json={"message": {"token": "t1"}}, headers={"authorization": ""}
        )

        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"
        assert not simulator.messages

    async def test_bad_device_token_is_unregistered(
        self, push: tuple[PushSimulator, httpx.AsyncClient]
    ) -> None:
        _, client = push
        response = await client.post(SEND, json={"message": {"token": "bad-1"}})

        assert response.status_code == 404
        [detail] = response.json()["error"]["details"]
        assert detail["errorCode"] == "UNREGISTERED"

    async def test_invalid_message_is_invalid_argument(
        self, push: tuple[PushSimulator, httpx.AsyncClient]
    ) -> None:
        _, client = push
        for message in [{}, {"token": "t", "topic": "news"}, {"token": "t", "data": {"n": 1}}]:
            response = await client.post(SEND, json={"message": message})
            assert response.status_code == 400
            assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


class TestMailCatcher:
    async def test_keeps_and_shows_what_it_caught(self) -> None:
        catcher = MailCatcher()
        await catcher.start()
        try:
            await aiosmtplib.send(
                "Subject: <hello>\r\n\r\nplain body\r\n",
                sender="a@paymesh.test",
                recipients=["b@example.com"],
                hostname="127.0.0.1",
                port=catcher.port,
                start_tls=False,
            )
        finally:
            await catcher.stop()

        [caught] = catcher.messages
        assert (caught.sender, caught.recipients, caught.subject) == (
            "a@paymesh.test",
            ["b@example.com"],
            "<hello>",
        )
        transport = httpx.ASGITransport(app=catcher.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://mail.test") as client:
            listed = (await client.get("/messages")).json()
            page = (await client.get("/")).text
        assert listed[0]["subject"] == "<hello>"
        assert "&lt;hello&gt;" in page and "<hello>" not in page

    async def test_stop_closes_the_port(self) -> None:
        catcher = MailCatcher()
        await catcher.start()
        port = catcher.port
        await catcher.stop()

        with pytest.raises(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
