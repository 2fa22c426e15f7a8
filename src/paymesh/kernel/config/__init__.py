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
from pydantic_settings import BaseSettings, SettingsConfigDict

from paymesh.kernel.config.base import (
    DEVELOPMENT_SIGNING_SECRET,
    WILDCARD_HOSTS,
    ServiceSettings,
    _blank_is_unset,
)
from paymesh.kernel.config.gateway import EdgeRoute, GatewaySettings, TrustedIssuerSettings
from paymesh.kernel.config.services import (
    KYC_LEVELS,
    MAX_LIMIT_MINOR,
    AuditSettings,
    DocumentKind,
    ForexSettings,
    GrantedLevel,
    IdentitySettings,
    KycLevel,
    LedgerSettings,
    LevelLimits,
    NotificationsSettings,
    PaymentsSettings,
    ProfilesSettings,
    ProvidersSettings,
    RiskSettings,
    WalletsSettings,
)

__all__ = [
    "DEVELOPMENT_SIGNING_SECRET",
    "KYC_LEVELS",
    "MAX_LIMIT_MINOR",
    "WILDCARD_HOSTS",
    "AuditSettings",
    "DocumentKind",
    "EdgeRoute",
    "EventSettings",
    "ForexSettings",
    "GatewaySettings",
    "GrantedLevel",
    "IdentitySettings",
    "KycLevel",
    "LedgerSettings",
    "LevelLimits",
    "NotificationsSettings",
    "PaymentsSettings",
    "ProfilesSettings",
    "ProvidersSettings",
    "RiskSettings",
    "ServiceSettings",
    "Settings",
    "TrustedIssuerSettings",
    "WalletsSettings",
    "get_settings",
]


class EventSettings(BaseModel):
    broker_namespace: str = Field(
        default="paymesh",
        pattern=r"^[a-z][a-z0-9-]{0,31}$",
        description="With PAYMESH_BROKER_URL: the prefix of the exchange, queues, subjects "
        "and streams, so several deployments can share one broker.",
    )
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
    check_payloads: bool = Field(
        default=False,
        description="Refuse to write an event whose type the service does not declare, or "
        "whose data does not fit the declared model (what /asyncapi.json documents). On in "
        "the test suite; off in production, where it would cost a validation per event.",
    )


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
    log_format: Literal["json", "ecs", "console"] = "json"
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
    http_in_progress_wait_seconds: float = Field(
        default=3.0,
        ge=0,
        description="How long a keyed service call answered 409 idempotency_request_in_progress"
        " is sent again, waiting for the first request's answer (0: not at all).",
    )
    run_workers: bool = True
    events: EventSettings = EventSettings()
    ledger: LedgerSettings = LedgerSettings()
    identity: IdentitySettings = IdentitySettings()
    wallets: WalletsSettings = WalletsSettings()
    forex: ForexSettings = ForexSettings()
    profiles: ProfilesSettings = ProfilesSettings()
    providers: ProvidersSettings = ProvidersSettings()
    risk: RiskSettings = RiskSettings()
    audit: AuditSettings = AuditSettings()
    notifications: NotificationsSettings = NotificationsSettings()
    payments: PaymentsSettings = PaymentsSettings()
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
        for name, crash_at in (("PAYMENTS", self.payments.crash_at), ("RISK", self.risk.crash_at)):
            if crash_at is not None and self.env != "test":
                raise ValueError(f"PAYMESH_{name}_CRASH_AT is a fault injection for tests only")
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
