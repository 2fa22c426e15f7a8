"""A user's notification preferences: opt-outs per category and channel.

Security messages (one-time codes, password and second-factor changes) are always sent:
an opt-out for them is refused when saved and ignored if one were ever stored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from paymesh.notifications.routing import SECURITY_CATEGORIES, Category
from paymesh.notifications.templating import CHANNELS, Channel

SECURITY_OPT_OUT = "security messages cannot be opted out of"


def _normalized(opted_out: dict[Category, list[Channel]]) -> dict[Category, list[Channel]]:
    if SECURITY_CATEGORIES & set(opted_out):
        raise ValueError(SECURITY_OPT_OUT)
    # One spelling per meaning: channels in a fixed order, no repeats, no empty lists.
    return {
        category: [channel for channel in CHANNELS if channel in channels]
        for category, channels in sorted(opted_out.items())
        if channels
    }


OptedOut = Annotated[dict[Category, list[Channel]], AfterValidator(_normalized)]


class Preferences(BaseModel):
    """What a user receives: every category on every channel except the opt-outs."""

    opted_out: OptedOut = Field(
        default_factory=dict,
        description='Channels opted out of, per category: `{"marketing": ["email", "sms", '
        '"push"], "money": ["sms"]}`. Security messages cannot be opted out of.',
    )


class PreferencesUpdate(BaseModel):
    """The body of `PUT /v1/notifications/preferences/me`: replaces all opt-outs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    opted_out: OptedOut = Field(
        description="The complete set of opt-outs; a category left out is opted back in."
    )


def allowed(preferences: Preferences | None, category: str, channel: str) -> bool:
    """Whether a message of this category may go out on this channel."""
    if category in SECURITY_CATEGORIES or preferences is None:
        return True
    return channel not in preferences.opted_out.get(category, [])  # type: ignore[call-overload]
