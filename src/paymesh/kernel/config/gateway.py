"""The gateway's settings: trusted issuers, edge routes, limits, breakers."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from paymesh.kernel.auth import DEFAULT_TIER, RateLimitTier


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
        "the client address is read from X-Forwarded-For, and the client certificate they "
        "verified is passed on (X-Forwarded-Client-Cert; dropped from anyone else) (JSON list).",
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
