"""How other services ask notifications for a message outside an event (identity's
one-time codes): the narrow protocol and its HTTP implementation."""

from __future__ import annotations

from typing import Any, Protocol

from paymesh.kernel.http import ServiceClient
from paymesh.notifications.schemas import MessagesQueued


class NotificationsClient(Protocol):
    async def send(
        self,
        *,
        event_type: str,
        user_id: str,
        data: dict[str, Any],
        idempotency_key: str,
        channel: str | None = None,
    ) -> MessagesQueued: ...


class HttpNotifications:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def send(
        self,
        *,
        event_type: str,
        user_id: str,
        data: dict[str, Any],
        idempotency_key: str,
        channel: str | None = None,
    ) -> MessagesQueued:
        body: dict[str, Any] = {
            "event_type": event_type,
            "user_id": user_id,
            "data": data,
            "idempotency_key": idempotency_key,
        }
        if channel is not None:
            body["channel"] = channel
        response = await self._client.request(
            "POST",
            "/v1/notifications/messages",
            json=body,
            idempotency_key=f"message:{idempotency_key}",  # makes a retry safe
        )
        return MessagesQueued.model_validate_json(response.content)
