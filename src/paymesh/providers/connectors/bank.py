"""The partner-bank connector: `PartnerBank` speaks one bank's HTTP API, `PartnerBanks`
holds every configured bank and routes a payout to the first that takes its currency and
country.

The bank's API (which the simulator in `simulators/bank.py` implements):

* `POST {base}/pacs008` with an ISO 20022 pacs.008 (`application/xml`) → 200 with a
  pacs.002 status report. The bank dedupes by `MsgId` + `EndToEndId`: the same message
  again answers the original's current status, which is what makes retries safe.
* `GET {base}/status/{end_to_end_id}` → 200 pacs.002 (the current status) or 404.
* `GET {base}/accounts/{iban or account number}` → 200 `{exists, name, currency}` or 404.
* Callbacks: `POST` of a pacs.002 to `/v1/providers/banks/{bank}/status`, authenticated
  per bank (`callback_auth`): `hmac`, with
  `X-Bank-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`; or
  `mtls`, by the bank's TLS client certificate, verified by the proxy in front of the
  gateway and forwarded as `X-Forwarded-Client-Cert: Hash=<SHA-256>` (the gateway passes
  that header on only from its trusted proxies), matched against the configured fingerprint.

We sign nothing we send: the bank knows us by our TLS client certificate (mTLS) when it
asks for one. Every call runs under the bank's circuit breaker (purgatory, as the gateway
does per upstream) and is retried by tenacity on connection errors and 5xx answers only.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from purgatory import AsyncCircuitBreakerFactory, AsyncInMemoryUnitOfWork
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from paymesh.kernel.config import Settings
from paymesh.kernel.config.banks import PartnerBankSettings
from paymesh.providers.iso20022 import Iso20022Invalid, StatusReport, parse_pacs002
from paymesh.providers.payouts import errors

log = structlog.get_logger("paymesh.providers.bank")

SIGNATURE_HEADER = "x-bank-signature"
CLIENT_CERTIFICATE_HEADER = "x-forwarded-client-cert"
SIGNATURE_SCHEME = "v1"
CALLBACK_PREFIX = "/v1/providers/banks"
CALLBACK_TOLERANCE_SECONDS = 300
XML_MEDIA_TYPE = "application/xml"
BREAKER_THRESHOLD = 5
BREAKER_TTL_SECONDS = 30.0
ATTEMPTS = 3


def callback_path(bank: str) -> str:
    return f"{CALLBACK_PREFIX}/{bank}/status"


@dataclass(frozen=True)
class AccountLookup:
    """The bank's answer about an account it holds."""

    name: str | None
    currency: str | None


class _BankFailed(Exception):
    """A call that counts against the bank's breaker and is worth retrying."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def tls_verification(bank: PartnerBankSettings) -> ssl.SSLContext | bool:
    """What httpx verifies the bank with: its CA when one is configured (else the system's),
    and our client certificate when the bank asks for mutual TLS."""
    if bank.ca_certificate is None and bank.client_certificate is None:
        return True
    context = ssl.create_default_context(
        cafile=str(bank.ca_certificate) if bank.ca_certificate else None
    )
    if bank.client_certificate is not None:
        context.load_cert_chain(
            str(bank.client_certificate),
            str(bank.client_private_key) if bank.client_private_key else None,
        )
    return context


class PartnerBank:
    """One partner bank's HTTP API. Logs name instructions by end-to-end id, never an
    account number or a secret."""

    def __init__(
        self,
        settings: PartnerBankSettings,
        base_url: str,
        breakers: AsyncCircuitBreakerFactory,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_wait_seconds: float = 0.2,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._secret = settings.callback_secret.get_secret_value().encode()
        self._breakers = breakers
        self._retry_wait_seconds = retry_wait_seconds
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(settings.timeout_seconds),
            verify=tls_verification(settings),
            transport=transport,
        )

    def routes(self, currency: str, country: str) -> bool:
        return currency in self.settings.currencies and country in self.settings.countries

    async def submit(self, message: bytes, end_to_end_id: str) -> StatusReport:
        """Send a pacs.008; the bank's pacs.002 answer. Sending the same message again is
        safe: the bank answers the original's status."""
        response = await self._call(
            "submit",
            "POST",
            "/pacs008",
            content=message,
            headers={"content-type": XML_MEDIA_TYPE},
        )
        report = self._report(response, end_to_end_id)
        log.info("payout_sent", bank=self.name, end_to_end_id=end_to_end_id, status=report.status)
        return report

    async def status(self, end_to_end_id: str) -> StatusReport | None:
        """The instruction's current status at the bank; None when the bank never got it."""
        response = await self._call("status", "GET", f"/status/{end_to_end_id}")
        if response.status_code == 404:
            return None
        return self._report(response, end_to_end_id)

    async def lookup_account(self, account: str) -> AccountLookup | None:
        """The bank's own lookup of an account; None when it holds no such account."""
        response = await self._call("account_lookup", "GET", f"/accounts/{account}")
        if response.status_code == 404:
            return None
        self._expect_success(response)
        try:
            document: Any = response.json()
            exists = document["exists"] is True
        except (ValueError, KeyError, TypeError):
            raise errors.BankUnavailable(detail="the bank's account lookup is unreadable") from None
        if not exists:
            return None
        name, currency = document.get("name"), document.get("currency")
        return AccountLookup(
            name=name[:140] if isinstance(name, str) and name else None,
            currency=currency if isinstance(currency, str) else None,
        )

    def verify_callback(
        self, body: bytes, headers: Mapping[str, str], now: float | None = None
    ) -> StatusReport:
        """The status report in an authentic, fresh callback; else an error (401 for the
        signature, its age or the client certificate, 400 for a body that is not a
        pacs.002)."""
        if self.settings.callback_auth == "mtls":
            expected = self.settings.callback_certificate_sha256 or ""
            verify_client_certificate(expected, headers.get(CLIENT_CERTIFICATE_HEADER, ""))
        else:
            verify_signature(self._secret, body, headers.get(SIGNATURE_HEADER, ""), now)
        return read_status_report(body)

    async def _call(self, operation: str, method: str, path: str, **options: Any) -> httpx.Response:
        """One call under the breaker, with retries; `operation` names it in logs (the
        path may hold an account number)."""
        breaker = await self._breakers.get_breaker(f"paymesh:providers:bank:{self.name}")
        try:
            async with breaker:
                return await self._with_retries(method, path, **options)
        except OpenedState:
            raise errors.BankUnavailable(
                detail=f"{self.name} is failing; calls are refused until it recovers"
            ) from None
        except _BankFailed as failure:
            log.warning(
                "bank_call_failed", bank=self.name, operation=operation, reason=failure.reason
            )
            raise errors.BankUnavailable(detail=failure.reason) from None

    async def _with_retries(self, method: str, path: str, **options: Any) -> httpx.Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_BankFailed),
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_exponential(multiplier=self._retry_wait_seconds, max=2.0),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    response = await self._http.request(method, path, **options)
                except httpx.TransportError as error:
                    raise _BankFailed(type(error).__name__) from None
                if response.status_code >= 500:
                    raise _BankFailed(f"the bank answered {response.status_code}")
                return response
        raise AssertionError("unreachable: tenacity reraises the last failure")

    def _report(self, response: httpx.Response, end_to_end_id: str) -> StatusReport:
        self._expect_success(response)
        report = read_status_report(response.content, unavailable=True)
        if report.original_end_to_end_id != end_to_end_id:
            raise errors.BankUnavailable(detail="the bank answered about another instruction")
        return report

    def _expect_success(self, response: httpx.Response) -> None:
        if not response.is_success:
            # 4xx: ours to fix (certificate, message); not the bank being down.
            log.warning("bank_refused_call", bank=self.name, status=response.status_code)
            raise errors.BankUnavailable(detail=f"the bank answered {response.status_code}")

    async def aclose(self) -> None:
        await self._http.aclose()


def verify_client_certificate(expected_sha256: str, header: str) -> None:
    """The bank's client certificate, as the TLS-terminating proxy verified and forwarded it
    (X-Forwarded-Client-Cert; the gateway drops the header from anyone but its trusted
    proxies): the element the nearest proxy added (the last) must carry `Hash=` equal to
    the configured fingerprint, compared in constant time."""
    elements = [element for element in header.split(",") if element.strip()]
    if not elements:
        raise errors.InvalidBankSignature(detail="no verified client certificate was forwarded")
    found = ""
    for pair in elements[-1].split(";")[:16]:
        key, _, value = pair.strip().partition("=")
        if key.strip().lower() == "hash":
            found = value.strip().strip('"').lower()
    if not found.isascii() or not hmac.compare_digest(
        found.encode(), expected_sha256.lower().encode()
    ):
        raise errors.InvalidBankSignature(detail="the client certificate is not the bank's")


def verify_signature(secret: bytes, body: bytes, header: str, now: float | None = None) -> None:
    """`t=<unix seconds>,v1=<hex>` (several `v1` while the bank rotates its secret), the hex
    an HMAC-SHA256 over "<t>." and the raw body, compared in constant time; the timestamp
    within `CALLBACK_TOLERANCE_SECONDS`, checked after the signature."""
    timestamp, signatures = _signature_parts(header)
    if timestamp is None or not signatures:
        raise errors.InvalidBankSignature(detail=f"{SIGNATURE_HEADER} is missing or bad")
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected.encode(), value.encode()) for value in signatures):
        raise errors.InvalidBankSignature()
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > CALLBACK_TOLERANCE_SECONDS:
        raise errors.BankSignatureExpired(
            detail=f"signed {int(age)} s from now; the tolerance is {CALLBACK_TOLERANCE_SECONDS} s"
        )


def _signature_parts(header: str) -> tuple[str | None, list[str]]:
    timestamp: str | None = None
    signatures = []
    for part in header.split(",")[:8]:
        key, _, value = part.strip().partition("=")
        if not value.isascii():
            continue
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = value
        elif key == SIGNATURE_SCHEME:
            signatures.append(value)
    return timestamp, signatures


def read_status_report(body: bytes, *, unavailable: bool = False) -> StatusReport:
    """A pacs.002 validated against its XSD (no DTDs or entities); a body that is not one is
    the sender's fault (400), or, for the bank's own answer, the bank being broken (503)."""
    try:
        return parse_pacs002(body)
    except (Iso20022Invalid, ValueError, SyntaxError) as error:
        if unavailable:
            raise errors.BankUnavailable(detail="the bank's answer is not a pacs.002") from None
        raise errors.MalformedBankMessage(detail=type(error).__name__) from None


class PartnerBanks:
    """Every configured partner bank, in the configured order (the order routes)."""

    def __init__(self, banks: Sequence[PartnerBank]) -> None:
        self.banks = list(banks)
        self._by_name = {bank.name: bank for bank in self.banks}

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> PartnerBanks:
        breakers = AsyncCircuitBreakerFactory(
            default_threshold=BREAKER_THRESHOLD,
            default_ttl=BREAKER_TTL_SECONDS,
            uow=AsyncInMemoryUnitOfWork(),
        )
        banks = []
        for bank in settings.providers.banks:
            if bank.base_url is None and settings.env == "production":
                # Unset means the built-in simulator, which production does not serve.
                log.error("partner_bank_without_url", bank=bank.name)
                continue
            url = bank.url(settings.origin)
            banks.append(PartnerBank(bank, url, breakers, transport=transport))
        return cls(banks)

    def get(self, name: str) -> PartnerBank:
        bank = self._by_name.get(name)
        if bank is None:
            raise errors.BankNotFound()
        return bank

    def route(self, currency: str, country: str) -> PartnerBank:
        """The first bank that pays out in `currency` to `country`."""
        for bank in self.banks:
            if bank.routes(currency, country):
                return bank
        if not any(currency in bank.settings.currencies for bank in self.banks):
            raise errors.UnsupportedCurrency(detail=f"no partner bank pays out in {currency}")
        raise errors.UnsupportedCountry(
            detail=f"no partner bank pays out in {currency} to {country}"
        )

    async def aclose(self) -> None:
        for bank in self.banks:
            await bank.aclose()
