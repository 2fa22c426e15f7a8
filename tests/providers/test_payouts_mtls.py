"""Payouts to a partner bank that asks for a client certificate (mutual TLS): our
certificate opens the door; without it the bank refuses the handshake and nothing is sent.
The test makes its own CA, server and client certificates with `cryptography`."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from paymesh.kernel.config import Settings
from tests.providers.test_payouts_support import (
    BankTls,
    PayoutWorld,
    bank_instructions,
    payout_body,
    payout_reaches,
    serve_world,
    submit,
)

Key = ec.EllipticCurvePrivateKey


def issue(
    subject: str, key: Key, issuer: tuple[x509.Certificate, Key] | None, *, server: bool = False
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def write(directory: Path, name: str, certificate: x509.Certificate, key: Key) -> tuple[Path, Path]:
    certificate_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path


@pytest.fixture
def tls(tmp_path: Path) -> BankTls:
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = issue("Test partner bank CA", ca_key, None)
    ca_path, _ = write(tmp_path, "ca", ca, ca_key)
    server = write(
        tmp_path, "bank", issue("127.0.0.1", server_key, (ca, ca_key), server=True), server_key
    )
    client = write(
        tmp_path, "paymesh", issue("paymesh-payouts", client_key, (ca, ca_key)), client_key
    )
    return BankTls(ca_path, server[0], server[1], client[0], client[1])


@pytest.fixture
async def mtls_world(
    make_platform: Callable[..., Any], settings: Settings, tls: BankTls
) -> AsyncIterator[PayoutWorld]:
    async for world in serve_world(make_platform, settings, tls=tls):
        yield world


@pytest.fixture
async def certificate_less_world(
    make_platform: Callable[..., Any], settings: Settings, tls: BankTls
) -> AsyncIterator[PayoutWorld]:
    """The bank still requires a client certificate; we trust its CA but present none."""
    async for world in serve_world(
        make_platform,
        settings,
        tls=tls,
        bank_fields={"client_certificate": None, "client_private_key": None},
    ):
        yield world


class TestMutualTls:
    async def test_a_payout_settles_over_mutual_tls(self, mtls_world: PayoutWorld) -> None:
        response = await submit(mtls_world, payout_body("pay_mtls"))
        assert response.status_code == 201, response.text

        await payout_reaches(mtls_world, "pay_mtls", "settled")

        assert len(await bank_instructions(mtls_world)) == 1

    async def test_without_our_certificate_the_bank_refuses_and_nothing_is_sent(
        self, certificate_less_world: PayoutWorld
    ) -> None:
        world = certificate_less_world
        lookup = await world.http.post(
            "/v1/providers/beneficiaries/validate",
            json={"currency": "EUR", "beneficiary": payout_body("x")["beneficiary"]},
            headers=world.headers,
        )
        response = await submit(world, payout_body("pay_no_certificate"))

        assert lookup.status_code == 503
        assert lookup.json()["code"] == "bank_unavailable"
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "submitting"
        assert await bank_instructions(world) == []
