"""The identity service's tables: users and their roles, TOTP factors and recovery codes,
OAuth2 clients, authorization codes, refresh tokens, revoked access tokens, browser
sessions, signing keys, failed-login counters, and out-of-band one-time codes.

Secrets are never stored as given: passwords are Argon2 hashes (pwdlib); client secrets,
authorization codes, refresh tokens, session ids and recovery codes are stored as hashes
(`paymesh.identity.security`); one-time codes as keyed HMACs (`identity/otp/service.py`);
signing keys are encrypted at rest.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paymesh.identity.schemas import RateLimitTier
from paymesh.kernel.db import JSON_TYPE, UTCDateTime, service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)

ROLES = ("customer", "merchant", "ops", "finance", "compliance", "auditor", "admin")
"""Roles a user may hold. `service` is reserved for client-credentials service accounts."""

USER_STATUSES = ("active", "disabled")

KNOWN_TIERS = ", ".join(f"'{tier}'" for tier in RateLimitTier)


class Base(DeclarativeBase):
    metadata = metadata


class User(Base):
    __tablename__ = "identity_user"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, comment="usr_<ulid>")
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True, nullable=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    given_name: Mapped[str | None] = mapped_column(String(150), nullable=True)
    family_name: Mapped[str | None] = mapped_column(String(150), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True, comment="E.164")
    status: Mapped[str] = mapped_column(String(16), comment="active | disabled")
    password_hash: Mapped[str | None] = mapped_column(
        Text, nullable=True, comment="Argon2id (pwdlib); null: no password login"
    )
    external_id: Mapped[str | None] = mapped_column(
        String(255), nullable=True, comment="SCIM externalId"
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_identity_user_created_at_id", "created_at", "id"),)


class UserRole(Base):
    __tablename__ = "identity_user_role"

    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("identity_user.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_identity_user_role_role", "role"),)


class TotpFactor(Base):
    """A user's TOTP (RFC 6238) secret; login asks for a code once `confirmed`."""

    __tablename__ = "identity_totp_factor"

    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("identity_user.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[str] = mapped_column(Text, comment="base32 secret, encrypted at rest")
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    last_used_step: Mapped[int | None] = mapped_column(
        Integer, nullable=True, comment="time step of the last accepted code (no replays)"
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RecoveryCode(Base):
    __tablename__ = "identity_recovery_code"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("identity_user.id", ondelete="CASCADE")
    )
    code_hash: Mapped[str] = mapped_column(String(128), comment="SHA-256 hex")
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_identity_recovery_code_user_id", "user_id"),)


class Client(Base):
    """An OAuth2 client. No secret: a public client (PKCE only). Roles on a client that may
    use client_credentials make it a service account. `rate_limit_tier` is the gateway's
    limit for it, written into its access tokens as the `tier` claim."""

    __tablename__ = "identity_client"

    id: Mapped[str] = mapped_column(String(128), primary_key=True, comment="client_id")
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON_TYPE)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON_TYPE)
    grant_types: Mapped[list[str]] = mapped_column(JSON_TYPE)
    scopes: Mapped[list[str]] = mapped_column(JSON_TYPE, comment="scopes it may ask for")
    roles: Mapped[list[str]] = mapped_column(JSON_TYPE, comment="service-account roles")
    audience: Mapped[list[str]] = mapped_column(JSON_TYPE, comment="extra token audiences")
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    password_grant_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_limit_tier: Mapped[str] = mapped_column(
        String(16),
        default=RateLimitTier.BRONZE.value,
        server_default=RateLimitTier.BRONZE.value,
        comment="unlimited | gold | silver | bronze",
    )
    status: Mapped[str] = mapped_column(String(16), comment="active | disabled")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        # The gateway trusts the `tier` claim: the table holds no value it does not know.
        CheckConstraint(f"rate_limit_tier IN ({KNOWN_TIERS})", name="rate_limit_tier_known"),
    )


class AuthorizationCode(Base):
    __tablename__ = "identity_authorization_code"

    code_hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(40))
    session_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(512), nullable=True)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8), comment="S256 only")
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    amr: Mapped[list[str]] = mapped_column(JSON_TYPE)
    family_id: Mapped[str | None] = mapped_column(
        String(40), nullable=True, comment="refresh family issued for it (revoked on reuse)"
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RefreshToken(Base):
    """One refresh token. Rotation makes a new one in the same family; presenting a
    rotated one again is reuse, and revokes the whole family."""

    __tablename__ = "identity_refresh_token"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    family_id: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(40))
    session_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    scope: Mapped[str] = mapped_column(Text)
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    amr: Mapped[list[str]] = mapped_column(JSON_TYPE)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_identity_refresh_token_family_id", "family_id"),
        Index("ix_identity_refresh_token_user_id", "user_id"),
    )


class RevokedAccessToken(Base):
    """Access tokens revoked before they expire (RFC 7009), by `jti`; introspection
    reports them inactive. Rows are purged once the token would have expired anyway."""

    __tablename__ = "identity_revoked_access_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class TokenRevocation(Base):
    """Revocations of access tokens still in force: one token, a refresh family, a login
    session, or every token of a user or client issued before `not_before` (see
    `paymesh.kernel.revocation`). The source every process's registry is rebuilt from;
    rows are purged once every token they cover has expired."""

    __tablename__ = "identity_token_revocation"

    kind: Mapped[str] = mapped_column(
        String(16), primary_key=True, comment="token | family | session | subject | client"
    )
    value: Mapped[str] = mapped_column(String(128), primary_key=True)
    not_before: Mapped[float] = mapped_column(
        Float(precision=53), comment="unix time; covered tokens issued earlier are refused"
    )
    expires_at: Mapped[float] = mapped_column(
        Float(precision=53), index=True, comment="unix time; no covered token lives longer"
    )


class LoginSession(Base):
    """A browser's signed-in session at the provider (single sign-on, end-session)."""

    __tablename__ = "identity_login_session"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, comment="sid claim")
    secret_hash: Mapped[str] = mapped_column(String(128), unique=True, comment="cookie value")
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("identity_user.id", ondelete="CASCADE")
    )
    amr: Mapped[list[str]] = mapped_column(JSON_TYPE)
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_identity_login_session_user_id", "user_id"),)


class SigningKey(Base):
    """A token signing key. New tokens are signed with the newest active key; a retired
    key stays in JWKS until `expires_at`, after every token it signed has expired."""

    __tablename__ = "identity_signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    private_jwk: Mapped[str] = mapped_column(Text, comment="encrypted (AES-GCM) private JWK")
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON_TYPE)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="no longer signs from here on"
    )
    expires_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="leaves JWKS from here on"
    )


class LoginFailure(Base):
    """Failed logins counted per user (`user:<id>`) and per address (`address:<ip>`)."""

    __tablename__ = "identity_login_failure"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_failed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class OneTimeCode(Base):
    """A server-generated code sent out of band (SMS or email) for one `purpose`, such as
    a payment's step-up. Only its HMAC is kept: the code itself exists in the message sent
    and nowhere else. Wrong guesses use up `attempts_left`; at 0 the code is locked."""

    __tablename__ = "identity_one_time_code"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, comment="otp_<ulid>")
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("identity_user.id", ondelete="CASCADE")
    )
    purpose: Mapped[str] = mapped_column(String(64), comment="e.g. payment:pay_<ulid>")
    channel: Mapped[str | None] = mapped_column(
        String(8), nullable=True, comment="sms | email; null: notifications chooses"
    )
    code_hash: Mapped[str] = mapped_column(
        String(64), comment="HMAC-SHA256 hex over id and code, keyed from the signing secret"
    )
    attempts_left: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    void_reason: Mapped[str | None] = mapped_column(
        String(16), nullable=True, comment="replaced | delivery_failed"
    )

    __table_args__ = (
        CheckConstraint("attempts_left >= 0", name="attempts_left_not_negative"),
        Index("ix_identity_one_time_code_user_id_created_at", "user_id", "created_at"),
        Index("ix_identity_one_time_code_user_id_purpose", "user_id", "purpose"),
    )
