"""The KYC vendor connector: `KycVendor` is what the service needs from any vendor;
`HttpKycVendor` speaks the vendor's HTTP API (base URL + API key), and `CallbackVerifier`
checks the vendor's signed callbacks.

The vendor's API (which the simulator in `simulators/kyc.py` implements):

* `POST {base}/v1/checks` with `Authorization: Bearer <api key>` and
  `{reference, applicant: {given_name, family_name, date_of_birth, country},
  document: {type, number, issuing_country}, callback_url}` → `202 {id, status, reference}`.
* Later, `POST {callback_url}` with `{id, type: "check.completed", created_at,
  check: {id, reference, status: verified|rejected|needs_review, reasons: [{code, detail}]}}`
  and headers `Kyc-Timestamp: <unix seconds>`, `Kyc-Signature: v1=<hex>` where the hex is
  HMAC-SHA256(webhook secret, "<timestamp>." + raw body). Several `v1=` values (comma
  separated) are allowed while the vendor rotates its secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paymesh.kernel.config import Settings
from paymesh.kernel.http import shared_tls_context
from paymesh.kernel.jsonutil import UnacceptableJson, check_json
from paymesh.providers import errors
from paymesh.providers.schemas import KycApplicant, KycReason

log = structlog.get_logger("paymesh.providers.kyc")

TIMESTAMP_HEADER = "kyc-timestamp"
SIGNATURE_HEADER = "kyc-signature"
SIGNATURE_SCHEME = "v1"
SIMULATOR_PATH = "/_simulators/kyc"
CALLBACK_PATH = "/v1/providers/kyc/callbacks"


def _derived(settings: Settings, purpose: str) -> str:
    secret = settings.signing_secret.get_secret_value().encode()
    return hmac.new(secret, f"paymesh:providers:kyc:{purpose}".encode(), hashlib.sha256).hexdigest()


def kyc_api_key(settings: Settings) -> str:
    configured = settings.providers.kyc_api_key
    return configured.get_secret_value() if configured else _derived(settings, "api-key")


def kyc_webhook_secret(settings: Settings) -> str:
    configured = settings.providers.kyc_webhook_secret
    return configured.get_secret_value() if configured else _derived(settings, "webhook-secret")


def kyc_vendor_url(settings: Settings) -> str | None:
    """The vendor's base URL; unset, the platform's own simulator (never in production)."""
    configured = settings.providers.kyc_vendor_url
    if configured:
        return configured.rstrip("/")
    return None if settings.env == "production" else settings.origin + SIMULATOR_PATH


def kyc_callback_url(settings: Settings) -> str:
    return settings.providers.kyc_callback_url or settings.origin + CALLBACK_PATH


@dataclass(frozen=True)
class VendorDecision:
    """A callback whose signature and timestamp were verified."""

    event_id: str
    vendor_check_id: str
    reference: str
    status: Literal["verified", "rejected", "needs_review"]
    reasons: list[KycReason]
    signature_sha256: str
    """Digest of the signature header: the same signature twice is a replay."""


class KycVendor(Protocol):
    """What the providers service needs from a KYC vendor."""

    name: str

    async def submit(self, check_id: str, applicant: KycApplicant) -> str:
        """Send the applicant for checking; the vendor's id of the check. The decision
        arrives later as a signed callback."""
        ...

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> VendorDecision:
        """The decision in a callback, or an error when it is not authentic or stale."""
        ...

    async def aclose(self) -> None: ...


class _CallbackCheck(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=128)
    reference: str = Field(min_length=1, max_length=128)
    status: Literal["verified", "rejected", "needs_review"]
    reasons: list[KycReason] = Field(default_factory=list, max_length=20)


class _Callback(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=128)
    type: Literal["check.completed"]
    check: _CallbackCheck


class CallbackVerifier:
    """HMAC-SHA256 over the timestamp and the raw body, compared in constant time, with a
    tolerance window (replays inside the window are refused by the service, which keeps
    every accepted event id and signature)."""

    def __init__(self, secret: str, tolerance_seconds: int) -> None:
        self._secret = secret.encode()
        self.tolerance_seconds = tolerance_seconds

    def verify(
        self, body: bytes, headers: Mapping[str, str], now: float | None = None
    ) -> VendorDecision:
        timestamp_text = headers.get(TIMESTAMP_HEADER, "")
        signature_header = headers.get(SIGNATURE_HEADER, "")
        if not timestamp_text.isascii() or not timestamp_text.isdigit() or len(timestamp_text) > 12:
            raise errors.InvalidCallbackSignature(detail=f"{TIMESTAMP_HEADER} is missing or bad")
        expected = hmac.new(
            self._secret, timestamp_text.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        if not any(
            hmac.compare_digest(expected.encode(), candidate.encode())
            for candidate in _signatures(signature_header)
        ):
            raise errors.InvalidCallbackSignature()
        # Checked after the signature, so an attacker learns nothing from the answer.
        age = (time.time() if now is None else now) - int(timestamp_text)
        if abs(age) > self.tolerance_seconds:
            raise errors.CallbackTimestampOutOfTolerance(
                detail=f"signed {int(age)} s from now; the tolerance is {self.tolerance_seconds} s"
            )
        callback = _parse(body)
        return VendorDecision(
            event_id=callback.id,
            vendor_check_id=callback.check.id,
            reference=callback.check.reference,
            status=callback.check.status,
            reasons=callback.check.reasons,
            signature_sha256=hashlib.sha256(signature_header.encode()).hexdigest(),
        )


def _signatures(header: str) -> list[str]:
    found = []
    for part in header.split(",")[:8]:
        scheme, _, value = part.strip().partition("=")
        if scheme == SIGNATURE_SCHEME and value.isascii():
            found.append(value)
    return found


def _parse(body: bytes) -> _Callback:
    try:
        check_json(body)
        return _Callback.model_validate_json(body)
    except (UnacceptableJson, ValidationError, ValueError) as error:
        raise errors.MalformedCallback(detail=type(error).__name__) from None


class HttpKycVendor:
    """The vendor's HTTP API. Logs name checks by id, never the applicant's data or a key."""

    name = "kyc-vendor"

    def __init__(
        self,
        base_url: str | None,
        api_key: str,
        callback_url: str,
        verifier: CallbackVerifier,
        *,
        timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self.callback_url = callback_url
        self.verifier = verifier
        self._http = httpx.AsyncClient(
            base_url=base_url or "http://kyc-vendor.invalid",
            timeout=httpx.Timeout(timeout_seconds),
            transport=transport,
            verify=shared_tls_context(),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpKycVendor:
        section = settings.providers
        return cls(
            kyc_vendor_url(settings),
            kyc_api_key(settings),
            kyc_callback_url(settings),
            CallbackVerifier(kyc_webhook_secret(settings), section.kyc_callback_tolerance_seconds),
            timeout_seconds=section.kyc_timeout_seconds,
        )

    async def submit(self, check_id: str, applicant: KycApplicant) -> str:
        if self.base_url is None:
            raise errors.KycVendorNotConfigured()
        body = {
            "reference": check_id,
            "applicant": {
                "given_name": applicant.given_name,
                "family_name": applicant.family_name,
                "date_of_birth": applicant.date_of_birth.isoformat(),
                "country": applicant.country,
            },
            "document": {
                "type": applicant.document_type,
                "number": applicant.document_number,
                "issuing_country": applicant.document_country,
            },
            "callback_url": self.callback_url,
        }
        try:
            response = await self._http.post(
                "/v1/checks",
                json=body,
                headers={"authorization": f"Bearer {self._api_key}", "idempotency-key": check_id},
            )
        except httpx.HTTPError as error:
            log.warning("kyc_vendor_unreachable", check_id=check_id, error=type(error).__name__)
            raise errors.KycVendorUnavailable(detail=type(error).__name__) from None
        return self._vendor_check_id(check_id, response)

    def _vendor_check_id(self, check_id: str, response: httpx.Response) -> str:
        status = response.status_code
        if status in (400, 422):
            log.warning("kyc_vendor_refused_check", check_id=check_id, status=status)
            raise errors.KycVendorRefused(detail=_vendor_detail(response))
        if not response.is_success:
            # 401/403 (our key), 429 and 5xx: ours or the vendor's to fix; worth a retry.
            log.warning("kyc_vendor_error", check_id=check_id, status=status)
            raise errors.KycVendorUnavailable(detail=f"the vendor answered {status}")
        try:
            document: Any = response.json()
            vendor_check_id = document["id"]
        except (ValueError, KeyError, TypeError):
            raise errors.KycVendorUnavailable(
                detail="the vendor's answer has no check id"
            ) from None
        if not isinstance(vendor_check_id, str) or not 0 < len(vendor_check_id) <= 128:
            raise errors.KycVendorUnavailable(detail="the vendor's check id is not usable")
        log.info("kyc_check_submitted", check_id=check_id, vendor_check_id=vendor_check_id)
        return vendor_check_id

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> VendorDecision:
        return self.verifier.verify(body, headers)

    async def aclose(self) -> None:
        await self._http.aclose()


def _vendor_detail(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return f"the vendor answered {response.status_code}"
    detail = document.get("detail") if isinstance(document, dict) else None
    return str(detail)[:200] if detail else f"the vendor answered {response.status_code}"
