"""Identity business operations used by the provider, the CLI and demo data: creating
users and clients, setting a client's rate-limit tier, and the claims a user's tokens
carry. No HTTP, no SQL strings."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity import errors, redirect_uris, repository, revocation
from paymesh.identity import models as tables
from paymesh.identity.schemas import (
    Client,
    ClientCreate,
    ClientCreated,
    RateLimitTier,
    User,
    UserCreate,
)
from paymesh.identity.security import hash_password, new_secret, secret_hash
from paymesh.kernel.db import utcnow
from paymesh.kernel.ids import new_id

USER_SCOPES = ("openid", "profile", "email", "phone", "offline_access")

PLATFORM_SERVICE_CLIENT = re.compile(r"^service-([a-z][a-z0-9_]{1,31})$")
"""Client ids of the platform's own services (`paymesh.kernel.oidc.service_client_id`)."""


def default_rate_limit_tier(client_id: str) -> RateLimitTier:
    """The platform's own services are never throttled by the gateway; others start low."""
    if PLATFORM_SERVICE_CLIENT.match(client_id):
        return RateLimitTier.UNLIMITED
    return RateLimitTier.BRONZE


def user_schema(row: tables.User, roles: list[str]) -> User:
    return User(
        id=row.id,
        username=row.username,
        email=row.email,
        email_verified=row.email_verified,
        given_name=row.given_name,
        family_name=row.family_name,
        phone=row.phone,
        status="disabled" if row.status == "disabled" else "active",
        roles=roles,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def client_schema(row: tables.Client) -> Client:
    return Client(
        client_id=row.id,
        name=row.name,
        public=row.secret_hash is None,
        redirect_uris=list(row.redirect_uris),
        post_logout_redirect_uris=list(row.post_logout_redirect_uris),
        grant_types=list(row.grant_types),
        scopes=list(row.scopes),
        roles=list(row.roles),
        audience=list(row.audience),
        first_party=row.first_party,
        password_grant_allowed=row.password_grant_allowed,
        rate_limit_tier=RateLimitTier(row.rate_limit_tier),
        status=row.status,
        created_at=row.created_at,
    )


async def create_user(session: AsyncSession, data: UserCreate) -> User:
    username = data.username.lower()
    email = data.email.lower() if data.email else None
    if await repository.get_user_by_username(session, username) is not None:
        raise errors.UsernameTaken(detail=f"username {username!r} is taken")
    if email and await repository.get_user_by_email(session, email) is not None:
        raise errors.EmailTaken(detail="a user with this email exists")
    password_hash = await asyncio.to_thread(hash_password, data.password.get_secret_value())
    now = utcnow()
    row = tables.User(
        id=new_id("usr"),
        username=username,
        email=email,
        email_verified=False,
        given_name=data.given_name,
        family_name=data.family_name,
        phone=data.phone,
        status="active",
        password_hash=password_hash,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    await repository.add_roles(session, row.id, sorted(set(data.roles)), now)
    return user_schema(row, sorted(set(data.roles)))


def _check_redirect_uri(uri: str, *, public: bool) -> None:
    refusal = redirect_uris.problem(uri, public=public)
    if refusal is not None:
        raise errors.InvalidClientConfiguration(detail=refusal)


def _check_client(data: ClientCreate) -> None:
    grants = set(data.grant_types)
    if "authorization_code" in grants and not data.redirect_uris:
        raise errors.InvalidClientConfiguration(
            detail="authorization_code needs at least one redirect URI"
        )
    if data.public and grants & {"client_credentials"}:
        raise errors.InvalidClientConfiguration(
            detail="a public client cannot use client_credentials"
        )
    if "password" in grants and not data.password_grant_allowed:
        raise errors.InvalidClientConfiguration(
            detail="the password grant needs password_grant_allowed (legacy clients only)"
        )
    if data.roles and "client_credentials" not in grants:
        raise errors.InvalidClientConfiguration(
            detail="roles are for service accounts (client_credentials)"
        )
    for uri in [*data.redirect_uris, *data.post_logout_redirect_uris]:
        _check_redirect_uri(uri, public=data.public)


async def create_client(
    session: AsyncSession, data: ClientCreate, *, secret: str | None = None
) -> ClientCreated:
    """Register a client; a confidential client's secret is returned here and never again.
    `secret` fixes it (demo data); otherwise a random one is made."""
    _check_client(data)
    client_id = data.client_id or new_id("cli")
    if await repository.get_client(session, client_id) is not None:
        raise errors.ClientIdTaken(detail=f"client {client_id!r} exists")
    if data.public:
        secret = None
    elif secret is None:
        secret = new_secret()
    now = utcnow()
    row = tables.Client(
        id=client_id,
        name=data.name,
        secret_hash=secret_hash(secret) if secret else None,
        redirect_uris=list(data.redirect_uris),
        post_logout_redirect_uris=list(data.post_logout_redirect_uris),
        grant_types=list(dict.fromkeys(data.grant_types)),
        scopes=list(dict.fromkeys(data.scopes)),
        roles=sorted(set(data.roles)),
        audience=list(data.audience),
        first_party=data.first_party,
        password_grant_allowed=data.password_grant_allowed,
        rate_limit_tier=(data.rate_limit_tier or default_rate_limit_tier(client_id)).value,
        status="active",
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    # An id the token endpoint resolved before (a platform service's `service-<name>`)
    # now names this registration.
    await revocation.client_changed(session, client_id)
    return ClientCreated(**client_schema(row).model_dump(), client_secret=secret)


async def set_client_rate_limit_tier(
    session: AsyncSession, client_id: str, tier: RateLimitTier
) -> tuple[RateLimitTier, Client]:
    """Give the client `tier`; its tier before and the client after. Tokens already issued
    keep the tier they were signed with until they expire: the change takes effect on the
    next token the client gets (nothing is revoked, so nobody is signed out)."""
    row = await repository.get_client(session, client_id)
    if row is None:
        raise errors.ClientNotFound(detail=f"no client {client_id!r}")
    before = RateLimitTier(row.rate_limit_tier)
    row.rate_limit_tier = tier.value
    row.updated_at = utcnow()
    await session.flush()
    await revocation.client_changed(session, client_id)
    return before, client_schema(row)


def user_claims(user: tables.User, scopes: set[str]) -> dict[str, object]:
    """Standard OpenID Connect claims of `user` that `scopes` release."""
    claims: dict[str, object] = {"sub": user.id}
    if "profile" in scopes:
        claims["preferred_username"] = user.username
        name = " ".join(part for part in (user.given_name, user.family_name) if part)
        for key, value in (
            ("name", name or None),
            ("given_name", user.given_name),
            ("family_name", user.family_name),
        ):
            if value:
                claims[key] = value
        claims["updated_at"] = int(user.updated_at.timestamp())
    if "email" in scopes and user.email:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    if "phone" in scopes and user.phone:
        claims["phone_number"] = user.phone
    return claims
