"""Identity's public shapes: users and OAuth2 clients as the API and the CLI show them."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from paymesh.kernel.auth import RateLimitTier as RateLimitTier  # noqa: PLC0414 (re-exported: one definition, in the kernel)

Role = Literal["customer", "merchant", "ops", "finance", "compliance", "auditor", "admin"]
ServiceRole = Literal[
    "customer", "merchant", "ops", "finance", "compliance", "auditor", "admin", "service"
]
GrantType = Literal["authorization_code", "refresh_token", "client_credentials", "password"]


USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{1,149}$"
SCOPE_PATTERN = r"^[\x21\x23-\x5B\x5D-\x7E]{1,100}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, description="Case-insensitive; stored lower.")
    password: SecretStr = Field(min_length=8, max_length=256)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    given_name: str | None = Field(default=None, max_length=150)
    family_name: str | None = Field(default=None, max_length=150)
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    roles: list[Role] = Field(default_factory=lambda: list[Role](["customer"]), min_length=1)


class User(BaseModel):
    id: str
    username: str
    email: str | None
    email_verified: bool
    given_name: str | None
    family_name: str | None
    phone: str | None
    status: Literal["active", "disabled"]
    roles: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime


class Contact(BaseModel):
    """Where to reach a user, for services that send them messages."""

    user_id: str
    email: str | None
    email_verified: bool
    phone: str | None = Field(description="E.164, when the user gave one.")
    active: bool
    customer: bool = Field(
        default=False, description="Whether the user has the customer role (not staff only)."
    )


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    client_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]{3,128}$", description="Generated when absent."
    )
    public: bool = Field(description="No secret: a browser or mobile app (PKCE only).")
    redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    grant_types: list[GrantType] = Field(min_length=1)
    scopes: list[str] = Field(default_factory=list, description="Scopes it may ask for.")
    roles: list[ServiceRole] = Field(
        default_factory=list, description="Roles of its client-credentials tokens."
    )
    audience: list[str] = Field(default_factory=list, description="Token `aud` override.")
    first_party: bool = Field(default=False, description="Users are not asked for consent.")
    password_grant_allowed: bool = Field(default=False, description="Legacy apps only.")
    rate_limit_tier: RateLimitTier | None = Field(
        default=None,
        description="The gateway's rate limit for it. Absent: `unlimited` for the platform's "
        "own services (`service-<name>`), `bronze` for any other client.",
    )


class Client(BaseModel):
    client_id: str
    name: str
    public: bool
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    scopes: list[str]
    roles: list[str]
    audience: list[str]
    first_party: bool
    password_grant_allowed: bool
    rate_limit_tier: RateLimitTier = Field(description="The `tier` claim of its access tokens.")
    status: str
    created_at: dt.datetime


class ClientCreated(Client):
    client_secret: str | None = Field(
        description="Shown once, for confidential clients; only its hash is stored."
    )
