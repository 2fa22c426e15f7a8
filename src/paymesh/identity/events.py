"""The CloudEvents identity writes to its outbox, each with the model of its `data`.

Who writes them:

- `accounts/service.py`: a user's own changes (registration, profile, password, TOTP);
- `administration/service.py`: an admin's changes to clients and users, with `actor`;
- `scim/storage.py`: a SCIM client's changes to users and groups, with `actor` and
  `via: "scim"`;
- `otp/service.py`: one-time codes issued, verified and locked (never the code or its hash);
- `revocation.py`: `identity.tokens.revoked`, which identity's own consumer hands to the
  shared revocation feed.

None of them carries a password, secret, code or token.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from paymesh.identity.otp.schemas import Channel
from paymesh.kernel.auth import RateLimitTier
from paymesh.kernel.event_catalog import EventData, EventType
from paymesh.kernel.revocation import Kind

_ADMIN = "The subject of the admin who made the change."
_SCIM_ADMIN = "The subject of the admin whose token the SCIM client used (null if unknown)."
_VIA = "`scim` when the change came through the SCIM API."

# --- users: their own changes --------------------------------------------------------------


class UserRegistered(EventData):
    user_id: str
    roles: list[str] = Field(description="The roles given at registration (`customer`).")


class UserUpdated(EventData):
    """Written by the user (no `actor`) or through SCIM (`actor`, `via`)."""

    user_id: str
    fields: list[str] = Field(
        description="The names of the fields that changed (sorted; through SCIM, "
        "`password` last when it was set). Never their values."
    )
    actor: str | None = Field(default=None, description=_SCIM_ADMIN)
    via: Literal["scim"] | None = Field(default=None, description=_VIA)


class PasswordChanged(EventData):
    user_id: str
    refresh_tokens_revoked: int = Field(
        description="How many of the user's refresh tokens were revoked (signed out everywhere)."
    )


class UserEvent(EventData):
    user_id: str


# --- clients and users: an admin's changes -------------------------------------------------


class ClientCreated(EventData):
    actor: str = Field(description=_ADMIN)
    client_id: str
    public: bool = Field(description="True for a public client (no secret; PKCE).")
    grant_types: list[str]
    roles: list[str]
    rate_limit_tier: RateLimitTier


class ClientChanged(EventData):
    actor: str = Field(description=_ADMIN)
    client_id: str


class ClientRateLimitTierChanged(EventData):
    actor: str = Field(description=_ADMIN)
    client_id: str
    before: RateLimitTier
    after: RateLimitTier


class UserChanged(EventData):
    actor: str = Field(description=_ADMIN)
    user_id: str


class UserRolesChanged(EventData):
    actor: str = Field(description=_ADMIN)
    user_id: str
    before: list[str] = Field(description="The roles before the change (sorted).")
    after: list[str] = Field(description="The roles after the change (sorted).")


# --- users and groups: through SCIM --------------------------------------------------------


class ScimUserChanged(EventData):
    actor: str | None = Field(description=_SCIM_ADMIN)
    via: Literal["scim"] = Field(description=_VIA)
    user_id: str


class GroupMembersChanged(EventData):
    actor: str | None = Field(description=_SCIM_ADMIN)
    via: Literal["scim"] = Field(description=_VIA)
    role: str = Field(description="The group, which is a role.")
    added: list[str] = Field(description="The ids of the users given the role (sorted).")
    removed: list[str] = Field(description="The ids of the users who lost the role (sorted).")


# --- one-time codes ------------------------------------------------------------------------


class OneTimeCodeEvent(EventData):
    """A one-time code's view: never the code, never its hash."""

    id: str = Field(description="The code's id (`otp_<ulid>`).")
    user_id: str
    purpose: str = Field(description="What the code confirms, e.g. `payment:pay_<ulid>`.")
    channel: Channel | None = Field(
        description="Where it was sent; null when notifications chose the channel."
    )
    expires_at: str = Field(description="When the code expires (ISO 8601).")


# --- token revocation ----------------------------------------------------------------------


class RevokedEntry(EventData):
    kind: Kind = Field(description="What `value` names.")
    value: str
    not_before: float = Field(description="Unix time: covered tokens issued before it are refused.")
    expires_at: float = Field(description="Unix time after which no covered token can be valid.")


class TokensRevoked(EventData):
    revocations: list[RevokedEntry]


EVENTS: tuple[EventType, ...] = (
    EventType(
        name="identity.user.registered",
        summary="A user registered themselves (self-service sign-up).",
        data=UserRegistered,
    ),
    EventType(
        name="identity.user.updated",
        summary="A user changed their own profile, or a SCIM client replaced the user.",
        data=UserUpdated,
    ),
    EventType(
        name="identity.user.password_changed",
        summary="A user changed their password; their refresh tokens were revoked.",
        data=PasswordChanged,
    ),
    EventType(
        name="identity.user.totp_enrolled",
        summary="A user started (or restarted) enrolling an authenticator app (TOTP).",
        data=UserEvent,
    ),
    EventType(
        name="identity.user.totp_enabled",
        summary="A user confirmed their TOTP enrolment; login now asks for a code.",
        data=UserEvent,
    ),
    EventType(
        name="identity.user.totp_disabled",
        summary="A user turned off their TOTP second factor.",
        data=UserEvent,
    ),
    EventType(
        name="identity.client.created",
        summary="An admin created a client application.",
        data=ClientCreated,
    ),
    EventType(
        name="identity.client.disabled",
        summary="An admin disabled a client; its refresh tokens were revoked.",
        data=ClientChanged,
    ),
    EventType(
        name="identity.client.active",
        summary="An admin enabled a client again.",
        data=ClientChanged,
    ),
    EventType(
        name="identity.client.deleted",
        summary="An admin deleted a client; its tokens were revoked.",
        data=ClientChanged,
    ),
    EventType(
        name="identity.client.secret_rotated",
        summary="An admin gave a confidential client a new secret; the old one stopped working.",
        data=ClientChanged,
    ),
    EventType(
        name="identity.client.rate_limit_tier_changed",
        summary="An admin changed the rate-limit tier of a client.",
        data=ClientRateLimitTierChanged,
    ),
    EventType(
        name="identity.user.disabled",
        summary="An admin disabled a user; their refresh tokens were revoked.",
        data=UserChanged,
    ),
    EventType(
        name="identity.user.active",
        summary="An admin enabled a user again.",
        data=UserChanged,
    ),
    EventType(
        name="identity.user.roles_changed",
        summary="An admin set a user's roles.",
        data=UserRolesChanged,
    ),
    EventType(
        name="identity.user.created",
        summary="A SCIM client created a user.",
        data=ScimUserChanged,
    ),
    EventType(
        name="identity.user.deleted",
        summary="A SCIM client deleted a user; their tokens were revoked.",
        data=ScimUserChanged,
    ),
    EventType(
        name="identity.group.members_changed",
        summary="A SCIM client changed a group's members, i.e. who has a role.",
        data=GroupMembersChanged,
    ),
    EventType(
        name="identity.otp.issued",
        summary="A one-time code was delivered to a user (after notifications accepted it).",
        data=OneTimeCodeEvent,
    ),
    EventType(
        name="identity.otp.verified",
        summary="A one-time code was guessed right and used.",
        data=OneTimeCodeEvent,
    ),
    EventType(
        name="identity.otp.locked",
        summary="A one-time code's last attempt was spent on a wrong guess; it is locked.",
        data=OneTimeCodeEvent,
    ),
    EventType(
        name="identity.tokens.revoked",
        summary="Tokens were ended early (revocation, logout, reuse, a user or client change).",
        data=TokensRevoked,
    ),
)
