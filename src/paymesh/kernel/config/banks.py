"""Partner banks (payouts) and the partner-bank simulator: `PAYMESH_PROVIDERS_BANKS` and
`PAYMESH_PROVIDERS_BANK_SIMULATOR`, each one JSON value.

The defaults give the embedded shape: one partner bank, `paymesh-partner-bank`, which is the
simulator the platform serves itself at ORIGIN/_simulators/bank, for EUR, GBP and USD payouts
to the SEPA countries, the United Kingdom and the United States.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from paymesh.kernel.config.base import _blank_is_unset

BANK_SIMULATOR_PATH: Final = "/_simulators/bank"
DEFAULT_BANK_NAME: Final = "paymesh-partner-bank"
DEFAULT_BANK_BIC: Final = "PMSHGB2LXXX"
DEVELOPMENT_BANK_CALLBACK_SECRET: Final = "paymesh-development-bank-callback-secret"  # noqa: S105
"""The simulator and the default bank share it; set your own for any real bank."""
SEPA_COUNTRIES: Final = [
    *("AD", "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR"),
    *("HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MC", "MT", "NL", "NO", "PL", "PT", "RO"),
    *("SE", "SI", "SK", "SM", "VA"),
]
BIC_PATTERN: Final = r"^[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$"


class BankSimulatorAccount(BaseModel):
    """An account the simulated bank holds (its account lookup answers with it)."""

    account: str = Field(min_length=1, max_length=34, description="IBAN or account number.")
    name: str = Field(min_length=1, max_length=140)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    balance_minor: int = Field(default=0, ge=0, description="Opening balance, minor units.")


def _demo_accounts() -> list[BankSimulatorAccount]:
    return [
        BankSimulatorAccount(account="DE89370400440532013000", name="Lena Fischer", currency="EUR"),
        BankSimulatorAccount(account="GB29NWBK60161331926819", name="Oliver Smith", currency="GBP"),
        BankSimulatorAccount(account="000123456789", name="Ava Johnson", currency="USD"),
        BankSimulatorAccount(account="DE67370400440532010001", name="Jonas Weber", currency="EUR"),
    ]


class BankSimulatorSettings(BaseModel):
    """The partner-bank simulator (`paymesh serve bank-simulator`, or mounted in process)."""

    settle_delay_seconds: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="How long an instruction to an account ending 0004 waits before it settles.",
    )
    callback_url: str | None = Field(
        default=None,
        description="Where final statuses are posted (signed pacs.002); defaults to "
        "ORIGIN/v1/providers/banks/paymesh-partner-bank/status.",
    )
    callback_secret: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_BANK_CALLBACK_SECRET),
        description="HMAC-SHA256 key of the X-Bank-Signature header of callbacks.",
    )
    tls_certificate: Path | None = Field(
        default=None, description="Server certificate (PEM): served over HTTPS when set."
    )
    tls_private_key: Path | None = Field(default=None, description="Its private key (PEM).")
    tls_client_ca: Path | None = Field(
        default=None,
        description="CA (PEM) of the client certificates it accepts: when set, a client "
        "without a certificate from it is refused at the TLS handshake (mutual TLS).",
    )
    accounts: list[BankSimulatorAccount] = Field(
        default_factory=_demo_accounts, description="The accounts it holds (JSON list)."
    )

    _blank_callback_url = field_validator("callback_url", mode="before")(_blank_is_unset)

    @model_validator(mode="after")
    def _key_with_certificate(self) -> BankSimulatorSettings:
        if (self.tls_certificate is None) != (self.tls_private_key is None):
            raise ValueError("tls_certificate and tls_private_key go together")
        if self.tls_client_ca is not None and self.tls_certificate is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_certificate")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_certificate is not None


class PartnerBankSettings(BaseModel):
    """One partner bank payouts go through, with its own credentials."""

    name: str = Field(default=DEFAULT_BANK_NAME, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    base_url: str | None = Field(
        default=None,
        description="Base URL of the bank's API; unset: the simulator the platform serves "
        "at ORIGIN/_simulators/bank (not in production).",
    )
    bic: str = Field(default=DEFAULT_BANK_BIC, pattern=BIC_PATTERN)
    currencies: list[str] = Field(default_factory=lambda: ["EUR", "GBP", "USD"])
    countries: list[str] = Field(default_factory=lambda: [*SEPA_COUNTRIES, "GB", "US"])
    client_certificate: Path | None = Field(
        default=None, description="Our TLS client certificate (PEM) when the bank asks for one."
    )
    client_private_key: Path | None = None
    ca_certificate: Path | None = Field(
        default=None, description="CA (PEM) the bank's server certificate is verified with."
    )
    callback_secret: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_BANK_CALLBACK_SECRET),
        description="Key of the bank's X-Bank-Signature on its callbacks.",
    )
    callback_auth: Literal["hmac", "mtls"] = Field(
        default="hmac",
        description="How the bank's callbacks are authenticated: `hmac`, its X-Bank-Signature "
        "over the raw body and a timestamp; `mtls`, its TLS client certificate, verified by "
        "the TLS-terminating proxy in front of the gateway (one of the gateway's "
        "trusted_proxies) and forwarded as X-Forwarded-Client-Cert (Envoy's format, "
        "`Hash=<SHA-256 of the DER certificate>`), matched against "
        "`callback_certificate_sha256`.",
    )
    callback_certificate_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Fa-f]{64}$",
        description="`mtls`: the SHA-256 fingerprint (hex) of the bank's client certificate.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    status_timeout_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A payout the bank has not settled or rejected this long after it was "
        "sent is given up (timed out, its reservation voided).",
    )
    poll_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often a payout still pending is polled."
    )

    _blank_base_url = field_validator("base_url", mode="before")(_blank_is_unset)

    @model_validator(mode="after")
    def _certificate_for_mtls(self) -> PartnerBankSettings:
        if self.callback_auth == "mtls" and self.callback_certificate_sha256 is None:
            raise ValueError("callback_auth mtls needs callback_certificate_sha256")
        return self

    @field_validator("currencies", "countries")
    @classmethod
    def _upper_case(cls, value: list[str]) -> list[str]:
        return [code.strip().upper() for code in value]

    def url(self, origin: str) -> str:
        """The bank's base URL: the configured one, else the simulator at `origin`."""
        return (self.base_url or f"{origin.rstrip('/')}{BANK_SIMULATOR_PATH}").rstrip("/")


def default_banks() -> list[PartnerBankSettings]:
    return [PartnerBankSettings()]
