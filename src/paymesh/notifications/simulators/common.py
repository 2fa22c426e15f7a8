"""What the notification simulators share: the in-memory listing and scripted failures."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

KEPT = 1000


@dataclass
class Failures:
    queue: deque[int] = field(default_factory=deque)

    def fail_next(self, status: int = 503, count: int = 1) -> None:
        self.queue.extend([status] * count)

    def take(self) -> int | None:
        return self.queue.popleft() if self.queue else None


def add_listing(app: FastAPI, messages: deque[dict[str, Any]]) -> None:
    @app.get("/_simulator/messages")
    async def list_messages() -> list[dict[str, Any]]:
        """What the simulator received, oldest first."""
        return list(messages)

    @app.delete("/_simulator/messages", status_code=204)
    async def clear_messages() -> None:
        messages.clear()
