"""The notifications API's bodies and answers."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from paymesh.kernel.ids import ID_PATTERN
from paymesh.notifications.templating import (
    EVENT_TYPE_PATTERN,
    LOCALE_PATTERN,
    Channel,
    TemplateContent,
)

Status = Literal["queued", "sent", "delivered", "failed"]


class NotificationOut(BaseModel):
    """One message to one user on one channel. `recipient` is masked; the content of a
    security message (a one-time code) is never shown."""

    id: str
    event_id: str
    event_type: str
    user_id: str
    channel: Channel
    category: str
    locale: str
    template_id: str
    template_version: int
    status: Status
    recipient: str | None = Field(description="Masked address the message went to.")
    subject: str | None
    text: str | None
    attempts: int
    next_attempt_at: dt.datetime | None
    provider_message_id: str | None
    last_error: str | None
    provider_error_code: str | None
    dead_lettered: bool
    replays: int
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    failed_at: dt.datetime | None


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None


class MessageCreate(BaseModel):
    """A service asks for a message outside an event: identity's one-time codes, whose
    code must never sit in an event at rest."""

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=200)
    user_id: str = Field(pattern=ID_PATTERN)
    data: dict[str, JsonValue] = Field(
        description="The template's variables; must name the user where the rule expects."
    )
    channel: Channel | None = Field(default=None, description="Only this channel.")
    idempotency_key: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")


class MessageQueued(BaseModel):
    id: str
    user_id: str
    channel: Channel
    status: Status


class MessagesQueued(BaseModel):
    notifications: list[MessageQueued]


class TemplateCreate(TemplateContent):
    event_type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=200)
    channel: Channel
    locale: str = Field(default="en", pattern=LOCALE_PATTERN, max_length=35)


class TemplateUpdate(TemplateContent):
    """The next version's content (the key stays)."""


class TemplateOut(BaseModel):
    id: str
    version: int
    event_type: str
    channel: Channel
    locale: str
    subject: str | None
    text: str
    html: str | None
    variables: list[str] = Field(description="The variables the template reads.")
    created_at: dt.datetime
    created_by: str


class TemplateList(BaseModel):
    items: list[TemplateOut]


class PreviewRequest(BaseModel):
    """Render a stored template (`template_id`) or a draft (`content` with `channel`)
    with sample data (`data`, or the event type's built-in sample)."""

    model_config = ConfigDict(extra="forbid")

    template_id: str | None = Field(default=None, pattern=ID_PATTERN)
    event_type: str | None = Field(default=None, pattern=EVENT_TYPE_PATTERN, max_length=200)
    content: TemplateContent | None = None
    data: dict[str, JsonValue] | None = None


class PreviewOut(BaseModel):
    subject: str | None
    text: str
    html: str | None
    data: dict[str, Any]


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(
        min_length=16,
        max_length=4096,
        pattern=r"^[A-Za-z0-9_:\-.]+$",
        description="The FCM registration token of this device.",
    )
    platform: Literal["android", "ios", "web"]


class DeviceOut(BaseModel):
    id: str
    platform: str
    token: str = Field(description="Masked: the last 8 characters.")
    created_at: dt.datetime


class DeviceList(BaseModel):
    items: list[DeviceOut]
