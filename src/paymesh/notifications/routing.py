"""Routing rules as data: which events notify whom, on which channels, in which category.

A rule names the event types it matches (an fnmatch pattern, `wallets.*.completed`), the
category the user's preferences are checked against, the channels to try, and where the
recipient's user id sits in the event's data. Rules are data so operators can change them
without a release; the defaults below cover the events the platform emits today.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paymesh.kernel.ids import ID_PATTERN
from paymesh.notifications.templating import Channel

Category = Literal["security", "account", "kyc", "money", "marketing"]
CATEGORIES: tuple[Category, ...] = ("security", "account", "kyc", "money", "marketing")
# Messages a user cannot opt out of: one-time codes, password and second-factor changes.
SECURITY_CATEGORIES: frozenset[str] = frozenset({"security"})

_EVENT_PATTERN = r"^[a-z0-9_.*?\[\]!-]{1,200}$"
# `user_id`, `/user_id`, `/owner/id`: a JSON pointer (RFC 6901), the leading slash optional.
_RECIPIENT_PATTERN = r"^/?[A-Za-z0-9_~-]+(/[A-Za-z0-9_~-]+){0,7}$"
_ID = re.compile(ID_PATTERN)


class Route(BaseModel):
    """One rule: events matching `event_type` notify the user at `recipient`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: str = Field(
        pattern=_EVENT_PATTERN, description="An fnmatch pattern: `identity.user.*`."
    )
    category: Category
    channels: tuple[Channel, ...] = Field(min_length=1, max_length=3)
    recipient: str = Field(
        pattern=_RECIPIENT_PATTERN,
        description="Where the recipient's user id is in the event data: `user_id`, "
        "`/owner/id` (a JSON pointer; the leading slash is optional).",
    )

    @field_validator("channels")
    @classmethod
    def _distinct(cls, channels: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if len(set(channels)) != len(channels):
            raise ValueError("channels must not repeat")
        return channels


def _route(event_type: str, category: Category, channels: str, recipient: str) -> Route:
    return Route.model_validate(
        {
            "event_type": event_type,
            "category": category,
            "channels": channels.split(),
            "recipient": recipient,
        }
    )


# Event types are the ones the services emit; `identity.otp.issued` comes only as a direct
# request from identity (its event of the same name carries no code and sends nothing).
DEFAULT_ROUTES: list[Route] = [
    _route("identity.user.registered", "account", "email", "user_id"),
    _route("identity.user.password_changed", "security", "email sms", "user_id"),
    _route("identity.user.totp_enabled", "security", "email", "user_id"),
    _route("identity.otp.issued", "security", "sms email", "user_id"),
    _route("profiles.kyc.verified", "kyc", "email", "user_id"),
    _route("profiles.kyc.rejected", "kyc", "email", "user_id"),
    _route("wallets.deposit.completed", "money", "email push", "owner_id"),
    _route("wallets.withdrawal.completed", "money", "email push", "owner_id"),
    _route("wallets.hold.created", "money", "push", "owner_id"),
    _route("payments.payment.succeeded", "money", "email push", "customer_id"),
    _route("payments.payment.received", "money", "email push", "payee_id"),
    _route("payments.payment.failed", "money", "email", "customer_id"),
]


def routes_for(event_type: str, routes: Sequence[Route]) -> list[Route]:
    """Every rule matching the event type, in the rules' order (case-sensitive)."""
    return [route for route in routes if fnmatchcase(event_type, route.event_type)]


def recipient_of(route: Route, data: Mapping[str, Any]) -> str | None:
    """The user id the rule points at in the event data; None when it is missing or is
    not a well-formed id (the event is then logged and skipped, never guessed at)."""
    value: Any = data
    for token in route.recipient.lstrip("/").split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, str) and _ID.fullmatch(value):
        return value
    return None
