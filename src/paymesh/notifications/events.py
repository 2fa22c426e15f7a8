"""The events the notifications service writes about its messages, with the model of their
`data`.

A message's delivery outcome (`sent`, `delivered`, `failed`) is written by the dispatcher
(`delivery.Dispatcher`) or, for SMS, by the provider's status callback (`tracking`); an
operator's replay of a failed message writes `replayed`. The outcome events carry the
event the message was about (`event_type`, `event_id`, `about`), so the service that wrote
it can show the message on its own timeline.
"""

from __future__ import annotations

from pydantic import Field

from paymesh.kernel.event_catalog import EventData, EventType
from paymesh.notifications.channels import ChannelName


class NotificationOutcomeData(EventData):
    """Where one message stands after a send, a provider's callback or its last attempt."""

    id: str = Field(description="The notification (message) id.")
    user_id: str = Field(description="The user the message went to.")
    channel: ChannelName
    event_type: str = Field(description="The type of the event the message was about.")
    event_id: str = Field(description="The id of that event.")
    about: str | None = Field(description="That event's subject (e.g. a payment id), if any.")
    attempts: int = Field(description="Send attempts so far.")
    provider_message_id: str | None = Field(
        description="The provider's id of the message; None when it was never accepted."
    )
    error: str | None = Field(description="failed: why, as the provider or carrier said.")


class NotificationReplayedData(EventData):
    """A failed message queued again by an operator, for a fresh set of attempts."""

    id: str = Field(description="The notification (message) id.")
    user_id: str = Field(description="The user the message goes to.")
    channel: ChannelName


EVENTS: tuple[EventType, ...] = (
    EventType(
        name="notifications.notification.sent",
        summary="The provider accepted a message (email, SMS or push) for delivery.",
        data=NotificationOutcomeData,
    ),
    EventType(
        name="notifications.notification.delivered",
        summary="A message reached its recipient, as the provider said on the send or in "
        "an SMS status callback.",
        data=NotificationOutcomeData,
    ),
    EventType(
        name="notifications.notification.failed",
        summary="A message failed for good (a permanent error, its last attempt, or the "
        "carrier's SMS status) and was dead-lettered.",
        data=NotificationOutcomeData,
    ),
    EventType(
        name="notifications.notification.replayed",
        summary="An operator queued a failed message again.",
        data=NotificationReplayedData,
    ),
)
