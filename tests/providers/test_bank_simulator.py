"""The partner-bank simulator over real HTTP (uvicorn on loopback), once over mutual TLS:
scripted outcomes, invalid messages, dedupe, delayed settlement, signed callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paymesh.kernel.config import Settings
from paymesh.kernel.config.banks import BankSimulatorAccount, BankSimulatorSettings
from paymesh.providers.iso20022 import StatusReport, build_pacs008, parse_pacs002
from paymesh.providers.simulators.bank import BankSimulator, sign, uvicorn_tls_options
from paymesh.providers.simulators.bank_book import Book
from tests.profiles.support import loopback_socket, serving
from tests.providers.test_iso20022 import credit_transfer

SECRET = "test-bank-callback-secret"
T = TypeVar("T")


@contextlib.asynccontextmanager
async def serving_on_port(app: Any, **options: Any) -> AsyncIterator[int]:
    """`app` served by uvicorn on a loopback port in the test's loop; the port."""
    sock = loopback_socket()
    async with serving(app, sock, **({"lifespan": "on"} | options)):
        yield sock.getsockname()[1]


@dataclass
class Receiver:
    """A callback receiver that refuses its first `failures` deliveries with a 503."""

    failures: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if self.failures > 0:
            self.failures -= 1
            return Response(status_code=503)
        self.received.append((dict(request.headers), body))
        return Response(status_code=200)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/callbacks", self.handle, methods=["POST"])])


async def eventually(probe: Callable[[], Awaitable[T | None]], seconds: float = 5.0) -> T:
    deadline = time.monotonic() + seconds
    while True:
        result = await probe()
        if result:
            return result
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.02)


@dataclass
class Bank:
    simulator: BankSimulator
    http: httpx.AsyncClient
    receiver: Receiver

    async def submit(self, **changes: object) -> StatusReport:
        xml = build_pacs008(credit_transfer(**changes))
        response = await self.http.post(
            "/pacs008", content=xml, headers={"content-type": "application/xml"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/xml"
        return parse_pacs002(response.content)

    async def status(self, end_to_end_id: str) -> StatusReport:
        response = await self.http.get(f"/status/{end_to_end_id}")
        assert response.status_code == 200
        return parse_pacs002(response.content)

    async def instructions(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = (await self.http.get("/_admin/instructions")).json()[
            "instructions"
        ]
        return listed


@pytest.fixture
async def bank() -> AsyncIterator[Bank]:
    receiver = Receiver()
    async with serving_on_port(receiver.app(), lifespan="off") as receiver_port:
        simulator = BankSimulator(
            callback_secret=SECRET,
            callback_url=f"http://127.0.0.1:{receiver_port}/callbacks",
            settle_delay_seconds=0.2,
            book=Book(
                [
                    BankSimulatorAccount(
                        account="DE89370400440532013000",
                        name="Lena Fischer",
                        currency="EUR",
                        balance_minor=100,
                    )
                ]
            ),
        )
        async with (
            serving_on_port(simulator.app()) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        ):
            yield Bank(simulator, http, receiver)


def iban_ending(suffix: str) -> str:
    """A structurally valid German IBAN whose account number ends in `suffix`."""
    bban = f"37040044053201{suffix}"
    check = 98 - int("".join(str(int(c, 36)) for c in f"{bban}DE00")) % 97
    return f"DE{check:02d}{bban}"


class TestOutcomes:
    async def test_settles_at_once_with_a_signed_callback(self, bank: Bank) -> None:
        answer = await bank.submit()
        assert (answer.status, answer.original_end_to_end_id) == ("ACSC", "E2E-pay_01JEXAMPLE")
        assert answer.original_message_id == "MSG-pay_01JEXAMPLE"
        assert (await bank.status("E2E-pay_01JEXAMPLE")).status == "ACSC"
        headers, body = await eventually(lambda: _first(bank.receiver.received))
        assert parse_pacs002(body).status == "ACSC"
        timestamp, _, digest = headers["x-bank-signature"].partition(",v1=")
        seconds = int(timestamp.removeprefix("t="))
        assert abs(time.time() - seconds) < 60
        expected = hmac.new(SECRET.encode(), f"{seconds}.".encode() + body, hashlib.sha256)
        assert hmac.compare_digest(digest, expected.hexdigest())
        accounts = (await bank.http.get("/_admin/accounts")).json()["accounts"]
        assert accounts[0]["balance_minor"] == 100 + 123_456

    @pytest.mark.parametrize(
        ("suffix", "reason"),
        [("0001", "AC01"), ("0002", "AC04"), ("0005", "AM04"), ("0006", "RR04"), ("0009", "AC01")],
    )
    async def test_rejected_with_its_reason(self, bank: Bank, suffix: str, reason: str) -> None:
        answer = await bank.submit(creditor_iban=iban_ending(suffix))
        assert (answer.status, answer.reason_code) == ("RJCT", reason)
        assert answer.reason_text
        assert (await bank.status("E2E-pay_01JEXAMPLE")).reason_code == reason
        _, body = await eventually(lambda: _first(bank.receiver.received))
        assert (parse_pacs002(body).status, parse_pacs002(body).reason_code) == ("RJCT", reason)

    async def test_never_answers(self, bank: Bank) -> None:
        answer = await bank.submit(creditor_iban=iban_ending("0003"))
        assert answer.status == "ACSP"
        await asyncio.sleep(0.4)  # twice the settle delay: still nothing
        assert (await bank.status("E2E-pay_01JEXAMPLE")).status == "ACSP"
        assert bank.receiver.received == []

    async def test_settles_after_the_delay(self, bank: Bank) -> None:
        answer = await bank.submit(creditor_iban=iban_ending("0004"))
        assert answer.status == "ACSP"
        assert (await bank.status("E2E-pay_01JEXAMPLE")).status == "ACSP"
        _, body = await eventually(lambda: _first(bank.receiver.received))
        assert parse_pacs002(body).status == "ACSC"
        assert (await bank.status("E2E-pay_01JEXAMPLE")).status == "ACSC"

    async def test_callback_retried_until_the_receiver_takes_it(self, bank: Bank) -> None:
        bank.receiver.failures = 2
        await bank.submit()
        _, body = await eventually(lambda: _first(bank.receiver.received))
        assert parse_pacs002(body).status == "ACSC"

        async def three_attempts() -> list[int] | None:
            # The simulator records an attempt once the receiver's answer is back, which
            # can be after the receiver has the body.
            statuses = [d.status for d in bank.simulator.deliveries]
            return statuses if len(statuses) >= 3 else None

        assert await eventually(three_attempts) == [503, 503, 200]

    async def test_unknown_status(self, bank: Bank) -> None:
        assert (await bank.http.get("/status/E2E-nobody")).status_code == 404


class TestInvalidAndDuplicate:
    async def test_invalid_message_rejected_ff01(self, bank: Bank) -> None:
        xml = build_pacs008(credit_transfer()).replace(b"<ChrgBr>SHAR</ChrgBr>", b"")
        response = await bank.http.post("/pacs008", content=xml)
        answer = parse_pacs002(response.content)
        assert (response.status_code, answer.status, answer.reason_code) == (200, "RJCT", "FF01")
        assert await bank.instructions() == []

    async def test_entity_bomb_rejected_ff01(self, bank: Bank) -> None:
        bomb = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aa">]><d>&a;</d>'
        answer = parse_pacs002((await bank.http.post("/pacs008", content=bomb)).content)
        assert (answer.status, answer.reason_code) == ("RJCT", "FF01")

    async def test_duplicate_is_one_instruction(self, bank: Bank) -> None:
        first = await bank.submit(creditor_iban=iban_ending("0004"))
        again = await bank.submit(creditor_iban=iban_ending("0004"))
        assert first.status == again.status == "ACSP"
        listed = await bank.instructions()
        assert len(listed) == 1
        assert listed[0]["submissions"] == 2
        _, body = await eventually(lambda: _first(bank.receiver.received))
        assert parse_pacs002(body).status == "ACSC"
        # After settlement the same message answers the settled status, still once.
        assert (await bank.submit(creditor_iban=iban_ending("0004"))).status == "ACSC"
        await asyncio.sleep(0.1)
        assert len(bank.receiver.received) == 1
        accounts = (await bank.http.get("/_admin/accounts")).json()["accounts"]
        credited = [a for a in accounts if a["account"] == iban_ending("0004")]
        assert credited[0]["balance_minor"] == 123_456

    async def test_same_end_to_end_id_in_another_message_is_refused(self, bank: Bank) -> None:
        await bank.submit()
        other = await bank.submit(message_id="MSG-other")
        assert (other.status, other.reason_code) == ("RJCT", "AM05")
        assert (await bank.status("E2E-pay_01JEXAMPLE")).status == "ACSC"


class TestAccountLookup:
    async def test_known_account(self, bank: Bank) -> None:
        response = await bank.http.get("/accounts/DE89 3704 0044 0532 0130 00")
        assert response.status_code == 200
        assert response.json() == {"exists": True, "name": "Lena Fischer", "currency": "EUR"}

    async def test_other_accounts_exist_unless_they_end_in_0009(self, bank: Bank) -> None:
        assert (await bank.http.get(f"/accounts/{iban_ending('0001')}")).status_code == 200
        assert (await bank.http.get(f"/accounts/{iban_ending('0009')}")).status_code == 404


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


class TestMutualTls:
    async def test_client_certificate_required(self, tmp_path: Path) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("Test bank CA", ca_key, None, ca=True)
        server_key, client_key = (
            ec.generate_private_key(ec.SECP256R1()),
            ec.generate_private_key(ec.SECP256R1()),
        )
        ca_path = _write(tmp_path / "ca.pem", ca, ca_key)
        server = _write(
            tmp_path / "server.pem",
            _certificate("127.0.0.1", server_key, (ca, ca_key), server=True),
            server_key,
        )
        client = _write(
            tmp_path / "client.pem", _certificate("paymesh", client_key, (ca, ca_key)), client_key
        )
        section = BankSimulatorSettings(
            tls_certificate=server,
            tls_private_key=server.with_suffix(".key"),
            tls_client_ca=ca_path,
        )
        simulator = BankSimulator(callback_secret=SECRET, settle_delay_seconds=0.1)
        async with serving_on_port(simulator.app(), **uvicorn_tls_options(section)) as port:
            base = f"https://127.0.0.1:{port}"
            with_certificate = ssl.create_default_context(cafile=str(ca_path))
            with_certificate.load_cert_chain(str(client), str(client.with_suffix(".key")))
            async with httpx.AsyncClient(base_url=base, verify=with_certificate) as http:
                xml = build_pacs008(credit_transfer())
                answer = parse_pacs002((await http.post("/pacs008", content=xml)).content)
                assert answer.status == "ACSC"
            without = ssl.create_default_context(cafile=str(ca_path))
            async with httpx.AsyncClient(base_url=base, verify=without) as http:
                with pytest.raises(httpx.TransportError):
                    await http.get("/health")
            assert len(simulator.book.instructions) == 1


def test_signature_is_over_timestamp_and_body() -> None:
    body = b"<Document/>"
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, 1_700_000_000) == f"t=1700000000,v1={expected}"


async def _first(items: list[T]) -> T | None:
    return items[0] if items else None


class TestSettings:
    def test_banks_and_simulator_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(
            "PAYMESH_PROVIDERS_BANKS",
            '[{"name": "acme-bank", "base_url": "https://bank.example/api/", "bic": "ACMEGB2L",'
            ' "currencies": ["gbp"], "countries": ["gb"], "callback_secret": "s3cret"}]',
        )
        monkeypatch.setenv(
            "PAYMESH_PROVIDERS_BANK_SIMULATOR",
            '{"settle_delay_seconds": 0.5, "callback_url": "https://platform.example/cb"}',
        )
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        (bank,) = settings.providers.banks
        assert (bank.name, bank.currencies, bank.countries) == ("acme-bank", ["GBP"], ["GB"])
        assert bank.url(settings.origin) == "https://bank.example/api"
        assert bank.callback_secret.get_secret_value() == "s3cret"
        simulator = BankSimulator.from_settings(settings)
        assert (simulator.settle_delay_seconds, simulator.callback_url) == (
            0.5,
            "https://platform.example/cb",
        )

    def test_default_bank_is_the_simulator_the_platform_serves(self) -> None:
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        (bank,) = settings.providers.banks
        assert bank.name == "paymesh-partner-bank"
        assert set(bank.currencies) == {"EUR", "GBP", "USD"}
        assert {"DE", "FR", "GB", "US"} <= set(bank.countries)
        assert bank.url(settings.origin) == f"{settings.origin}/_simulators/bank"
        simulator = BankSimulator.from_settings(settings)
        assert simulator.callback_url == (
            f"{settings.origin}/v1/providers/banks/paymesh-partner-bank/status"
        )
        # The simulator and the default bank share the callback secret.
        assert simulator.callback_secret == bank.callback_secret.get_secret_value()

    @pytest.mark.parametrize(
        "tls",
        [
            {"tls_certificate": "server.pem"},
            {"tls_private_key": "server.key"},
            {"tls_client_ca": "ca.pem"},
        ],
    )
    def test_incomplete_tls_is_refused(self, tls: dict[str, str]) -> None:
        with pytest.raises(ValueError, match="tls_"):
            BankSimulatorSettings.model_validate(tls)
        assert uvicorn_tls_options(BankSimulatorSettings()) == {}
