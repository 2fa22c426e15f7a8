"""What every settings section shares: the per-service section, blank-as-unset."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

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
