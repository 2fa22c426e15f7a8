"""Fire-and-forget coroutines owned by one component (a simulator's delayed callbacks):
kept referenced while they run, since the event loop holds tasks only weakly, and
cancelled and awaited together when the component closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._running: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(work, name=f"{self.owner}:{name}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def aclose(self) -> None:
        """Cancel what still runs and wait for it to end."""
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await task
