"""The channels against the local simulators, over real SMTP and HTTP on loopback."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request
from starlette.responses import PlainTextResponse

from paymesh.notifications.channels import (
    FcmPushChannel,
    OutgoingMessage,
    PermanentSendError,
    SmtpChannel,
    TransientSendError,
    TwilioSmsChannel,
    static_token,
    verify_twilio_signature,
)
from paymesh.notifications.simulators import MailCatcher, PushSimulator, SmsSimulator
from tests.profiles.support import NOWHERE, eventually, loopback_socket, serving, url_of

SID = "AC" + "0" * 32
AUTH_TOKEN = "sms-secret-token"
FROM = "+15005550006"
PROJECT = "paymesh-demo"
BEARER = "push-bearer-token"


def email(to: str = "carol@example.com", **fields: str | None) -> OutgoingMessage:
    values: dict[str, str | None] = {"subject": "Your receipt", "text": "You paid 12.50 EUR."}
    values.update(fields)
    return OutgoingMessage(channel="email", to=to, **values)  # type: ignore[arg-type]


def sms(to: str = "+447700900123") -> OutgoingMessage:
    return OutgoingMessage(channel="sms", to=to, subject=None, text="Code 123456")


def push(token: str = "device-abc", **data: str) -> OutgoingMessage:
    return OutgoingMessage(
        channel="push", to=token, subject="Payment received", text="+10 EUR", data=data
    )


@pytest.fixture
async def catcher() -> AsyncIterator[MailCatcher]:
    mail = MailCatcher()
    await mail.start()
    yield mail
    await mail.stop()


def smtp_channel(port: int, **options: object) -> SmtpChannel:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "Paymesh <no-reply@paymesh.test>",
        "start_tls": False,  # the loopback catcher offers no STARTTLS unless told to
        "timeout_seconds": 5,
    }
    values.update(options)
    return SmtpChannel(**values)  # type: ignore[arg-type]


class TestSmtpChannelSend:
    async def test_multipart_text_and_html_arrives(self, catcher: MailCatcher) -> None:
        channel = smtp_channel(catcher.port)
        result = await channel.send(email(html="<p>You paid <b>12.50 EUR</b>.</p>"))

        assert result.status == "sent"
        [caught] = catcher.messages
        assert caught.recipients == ["carol@example.com"]
        assert caught.sender == "no-reply@paymesh.test"
        assert caught.subject == "Your receipt"
        assert caught.text is not None and caught.text.strip() == "You paid 12.50 EUR."
        assert caught.html is not None and "<b>12.50 EUR</b>" in caught.html
        assert caught.message_id == result.provider_message_id

    async def test_text_only_has_no_html_part(self, catcher: MailCatcher) -> None:
        await smtp_channel(catcher.port).send(email())

        [caught] = catcher.messages
        assert caught.html is None
        assert caught.text is not None

    async def test_idempotency_key_gives_a_stable_message_id(self, catcher: MailCatcher) -> None:
        channel = smtp_channel(catcher.port)
        first = await channel.send(email(idempotency_key="ntf_01ABC"))
        again = await channel.send(email(idempotency_key="ntf_01ABC"))

        assert first.provider_message_id == again.provider_message_id
        assert first.provider_message_id == "<notification.ntf_01ABC@paymesh.test>"

    async def test_unicode_subject_and_body_arrive_intact(self, catcher: MailCatcher) -> None:
        subject = "Vous avez reçu 12,50 € de Zoë — paiement réussi " + "très long " * 8
        text = "Bonjour Zoë,\n\nvous avez reçu 12,50 €.\n"
        await smtp_channel(catcher.port).send(email(subject=subject, text=text, html="<p>€</p>"))

        [caught] = catcher.messages
        assert caught.subject == subject  # RFC 2047, folded: decoded back whole
        assert caught.text == text
        assert caught.html is not None and caught.html.strip() == "<p>€</p>"
        assert all(len(line) <= 998 for line in caught.raw.split(b"\r\n"))

    async def test_a_long_line_is_wrapped_and_arrives_whole(self, catcher: MailCatcher) -> None:
        one_line_html = "<p>" + "You paid 12.50 EUR. " * 200 + "</p>"  # 4,007 characters
        await smtp_channel(catcher.port).send(email(html=one_line_html))

        [caught] = catcher.messages
        assert max(len(line) for line in caught.raw.split(b"\r\n")) <= 998  # SMTP's limit
        assert caught.html is not None and caught.html.rstrip("\n") == one_line_html

    async def test_an_internationalised_address_is_sent_with_smtputf8(
        self, catcher: MailCatcher
    ) -> None:
        await smtp_channel(catcher.port).send(email("zoë@example.com"))

        [caught] = catcher.messages
        assert caught.recipients == ["zoë@example.com"]
        assert caught.text is not None and caught.text.strip() == "You paid 12.50 EUR."

    async def test_a_line_break_in_a_header_is_refused_not_sent(self, catcher: MailCatcher) -> None:
        with pytest.raises(PermanentSendError):
            await smtp_channel(catcher.port).send(email(subject="Hi\r\nBcc: eve@example.com"))
        with pytest.raises(PermanentSendError):
            await smtp_channel(catcher.port).send(email("carol@example.com\nBcc: eve@example.com"))
        assert not catcher.messages

    async def test_authenticates_with_configured_credentials(self) -> None:
        catcher = MailCatcher(username="mailer", password="s3cret")
        await catcher.start()
        try:
            await smtp_channel(catcher.port, username="mailer", password="s3cret").send(email())
            with pytest.raises(PermanentSendError) as refused:
                await smtp_channel(catcher.port, username="mailer", password="wrong").send(email())
        finally:
            await catcher.stop()
        assert len(catcher.messages) == 1
        assert refused.value.provider_code == "535"

    async def test_refused_connection_is_transient(self) -> None:
        with pytest.raises(TransientSendError):
            await smtp_channel(1).send(email())

    async def test_rejected_recipient_is_permanent(self, catcher: MailCatcher) -> None:
        with pytest.raises(PermanentSendError) as refused:
            await smtp_channel(catcher.port).send(email("rejected@example.com"))

        assert refused.value.provider_code == "550"
        assert not catcher.messages

    async def test_temporarily_refused_recipient_is_transient(self, catcher: MailCatcher) -> None:
        with pytest.raises(TransientSendError) as refused:
            await smtp_channel(catcher.port).send(email("busy@example.com"))

        assert refused.value.provider_code == "451"

    async def test_message_for_another_channel_is_permanent(self, catcher: MailCatcher) -> None:
        with pytest.raises(PermanentSendError):
            await smtp_channel(catcher.port).send(sms())


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1, trusted by the client context only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory: Path = tmp_path_factory.mktemp("tls")
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return Tls(server, client)


class TestSmtpChannelSendOverTls:
    async def test_starttls(self, tls: Tls) -> None:
        catcher = MailCatcher(tls_context=tls.server, username="mailer", password="pw")
        await catcher.start()
        try:
            channel = smtp_channel(
                catcher.port,
                username="mailer",
                password="pw",
                start_tls=True,
                tls_context=tls.client,
            )
            await channel.send(email())
        finally:
            await catcher.stop()
        assert len(catcher.messages) == 1

    async def test_implicit_tls(self, tls: Tls) -> None:
        catcher = MailCatcher(tls_context=tls.server, implicit_tls=True)
        await catcher.start()
        try:
            channel = smtp_channel(
                catcher.port, use_tls=True, start_tls=None, tls_context=tls.client
            )
            await channel.send(email())
        finally:
            await catcher.stop()
        assert len(catcher.messages) == 1

    async def test_untrusted_certificate_is_not_sent_to(self, tls: Tls) -> None:
        catcher = MailCatcher(tls_context=tls.server, implicit_tls=True)
        await catcher.start()
        try:
            # The system trust store only: the self-signed certificate is refused.
            channel = smtp_channel(catcher.port, use_tls=True, start_tls=None)
            with pytest.raises(TransientSendError):
                await channel.send(email())
        finally:
            await catcher.stop()
        assert not catcher.messages

    async def test_server_without_starttls_is_permanent(self, catcher: MailCatcher) -> None:
        channel = smtp_channel(catcher.port, start_tls=True)
        with pytest.raises(PermanentSendError):
            await channel.send(email())


@dataclass
class Callbacks:
    url: str
    received: list[tuple[dict[str, str], bool]]


@pytest.fixture
async def callbacks() -> AsyncIterator[Callbacks]:
    """A receiver like the lead's callback route: records each callback and whether its
    signature verified."""
    sock = loopback_socket()
    url = url_of(sock) + "/callbacks/sms?source=twilio"
    received: list[tuple[dict[str, str], bool]] = []
    app = FastAPI()

    @app.post("/callbacks/sms")
    async def status_callback(request: Request) -> PlainTextResponse:
        form = {key: str(value) for key, value in (await request.form()).items()}
        valid = verify_twilio_signature(
            str(request.url), form, request.headers.get("x-twilio-signature"), AUTH_TOKEN
        )
        received.append((form, valid))
        return PlainTextResponse("", status_code=204 if valid else 403)

    async with serving(app, sock):
        yield Callbacks(url, received)


@pytest.fixture
async def sms_simulator() -> AsyncIterator[tuple[SmsSimulator, str]]:
    simulator = SmsSimulator(SID, AUTH_TOKEN, callback_delay_seconds=0.01)
    sock = loopback_socket()
    async with serving(simulator.app(), sock):
        yield simulator, url_of(sock)
        await simulator.aclose()


def sms_channel(base_url: str, **options: object) -> TwilioSmsChannel:
    values: dict[str, object] = {
        "account_sid": SID,
        "auth_token": AUTH_TOKEN,
        "from_number": FROM,
        "base_url": base_url,
        "timeout_seconds": 5,
    }
    values.update(options)
    return TwilioSmsChannel(**values)  # type: ignore[arg-type]


class TestTwilioSmsChannelSend:
    async def test_sends_and_reports_signed_status_callbacks(
        self, sms_simulator: tuple[SmsSimulator, str], callbacks: Callbacks
    ) -> None:
        simulator, base_url = sms_simulator
        channel = sms_channel(base_url, status_callback_url=callbacks.url)
        try:
            result = await channel.send(sms())
        finally:
            await channel.aclose()

        assert result.status == "sent"
        assert result.provider_message_id.startswith("SM")
        [stored] = simulator.messages
        assert (stored["to"], stored["from"], stored["body"]) == (
            "+447700900123",
            FROM,
            "Code 123456",
        )

        async def both() -> bool:
            return len(callbacks.received) == 2

        await eventually(both, within_seconds=5)
        statuses = [form["MessageStatus"] for form, _ in callbacks.received]
        assert statuses == ["sent", "delivered"]
        assert all(valid for _, valid in callbacks.received)
        assert {form["MessageSid"] for form, _ in callbacks.received} == {
            result.provider_message_id
        }

    async def test_unreachable_number_fails_in_the_callback(
        self, sms_simulator: tuple[SmsSimulator, str], callbacks: Callbacks
    ) -> None:
        _, base_url = sms_simulator
        channel = sms_channel(base_url, status_callback_url=callbacks.url)
        try:
            await channel.send(sms("+447700900000"))
        finally:
            await channel.aclose()

        async def both() -> bool:
            return len(callbacks.received) == 2

        await eventually(both, within_seconds=5)
        final, valid = callbacks.received[-1]
        assert (final["MessageStatus"], final["ErrorCode"], valid) == ("failed", "30003", True)

    async def test_bad_credentials_are_permanent(
        self, sms_simulator: tuple[SmsSimulator, str]
    ) -> None:
        simulator, base_url = sms_simulator
        channel = sms_channel(base_url, auth_token="wrong")
        with pytest.raises(PermanentSendError) as refused:
            await channel.send(sms())
        await channel.aclose()

        assert (refused.value.status, refused.value.provider_code) == (401, "20003")
        assert not simulator.messages

    async def test_invalid_number_is_permanent(
        self, sms_simulator: tuple[SmsSimulator, str]
    ) -> None:
        _, base_url = sms_simulator
        channel = sms_channel(base_url)
        with pytest.raises(PermanentSendError) as refused:
            await channel.send(sms("07700 900123"))
        await channel.aclose()

        assert (refused.value.status, refused.value.provider_code) == (400, "21211")

    async def test_server_error_is_transient(self, sms_simulator: tuple[SmsSimulator, str]) -> None:
        simulator, base_url = sms_simulator
        simulator.fail_next(503)
        channel = sms_channel(base_url)
        with pytest.raises(TransientSendError) as failed:
            await channel.send(sms())
        retried = await channel.send(sms())
        await channel.aclose()

        assert failed.value.status == 503
        assert retried.status == "sent"

    async def test_refused_connection_is_transient(self) -> None:
        channel = sms_channel(NOWHERE)
        with pytest.raises(TransientSendError):
            await channel.send(sms())
        await channel.aclose()


@pytest.fixture
async def push_simulator() -> AsyncIterator[tuple[PushSimulator, str]]:
    simulator = PushSimulator(PROJECT, BEARER)
    sock = loopback_socket()
    async with serving(simulator.app(), sock):
        yield simulator, url_of(sock)


def push_channel(base_url: str, token: str = BEARER) -> FcmPushChannel:
    return FcmPushChannel(
        project_id=PROJECT,
        token_provider=static_token(token),
        base_url=base_url,
        timeout_seconds=5,
    )


class TestFcmPushChannelSend:
    async def test_sends_notification_and_data(
        self, push_simulator: tuple[PushSimulator, str]
    ) -> None:
        simulator, base_url = push_simulator
        channel = push_channel(base_url)
        result = await channel.send(push(payment_id="pay_01ABC"))
        await channel.aclose()

        assert result.status == "sent"
        assert result.provider_message_id.startswith(f"projects/{PROJECT}/messages/")
        [stored] = simulator.messages
        assert stored["message"] == {
            "token": "device-abc",
            "notification": {"title": "Payment received", "body": "+10 EUR"},
            "data": {"payment_id": "pay_01ABC"},
        }

    async def test_unregistered_token_is_permanent(
        self, push_simulator: tuple[PushSimulator, str]
    ) -> None:
        _, base_url = push_simulator
        channel = push_channel(base_url)
        with pytest.raises(PermanentSendError) as refused:
            await channel.send(push("bad-device"))
        await channel.aclose()

        assert (refused.value.status, refused.value.provider_code) == (404, "UNREGISTERED")

    async def test_bad_credentials_are_permanent(
        self, push_simulator: tuple[PushSimulator, str]
    ) -> None:
        simulator, base_url = push_simulator
        channel = push_channel(base_url, token="wrong")
        with pytest.raises(PermanentSendError) as refused:
            await channel.send(push())
        await channel.aclose()

        assert refused.value.status == 401
        assert not simulator.messages

    async def test_server_error_is_transient(
        self, push_simulator: tuple[PushSimulator, str]
    ) -> None:
        simulator, base_url = push_simulator
        simulator.fail_next(503)
        channel = push_channel(base_url)
        with pytest.raises(TransientSendError) as failed:
            await channel.send(push())
        retried = await channel.send(push())
        await channel.aclose()

        assert (failed.value.status, failed.value.provider_code) == (503, "UNAVAILABLE")
        assert retried.status == "sent"

    async def test_timeout_is_transient(self) -> None:
        # A server that accepts the connection and never answers.
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        channel = FcmPushChannel(
            project_id=PROJECT,
            token_provider=static_token(BEARER),
            base_url=f"http://127.0.0.1:{port}",
            timeout_seconds=0.2,
        )
        try:
            with pytest.raises(TransientSendError):
                await channel.send(push())
        finally:
            await channel.aclose()
            server.close()
            await server.wait_closed()
