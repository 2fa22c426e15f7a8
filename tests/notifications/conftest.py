"""The notifications tests' world: one per module (each test makes its own customers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from paymesh.kernel.config import Settings
from tests.notifications.support import NotificationsWorld, notifications_world


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_world(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
) -> AsyncIterator[NotificationsWorld]:
    """For modules marked `pytest.mark.asyncio(loop_scope="module")`."""
    settings = Settings(
        _env_file=None,
        env="test",
        data_dir=tmp_path_factory.mktemp("notifications") / "var",
        database_url=postgres_database,
        access_log=False,
        gateway={"rate_limits": False},
        events={
            "relay_interval_seconds": 0.05,
            "outbox_retention_seconds": 3600,
            "check_payloads": True,  # events fit what /asyncapi.json documents
        },
    )
    async for world in notifications_world(settings, postgres_database):
        yield world
