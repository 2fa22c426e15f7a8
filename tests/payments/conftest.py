"""The payments tests' world: one per module (each test makes its own customers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from paymesh.kernel.config import Settings
from tests.payments.support import PaymentsWorld, payments_world


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_world(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
) -> AsyncIterator[PaymentsWorld]:
    """For modules marked `pytest.mark.asyncio(loop_scope="module")`."""
    settings = Settings(
        _env_file=None,
        env="test",
        data_dir=tmp_path_factory.mktemp("payments") / "var",
        database_url=postgres_database,
        access_log=False,
        # A burst of concurrent payments on a loaded CI machine may take longer than the
        # production default (30 s) to drain; a 504 would hide the outcome under test.
        gateway={"rate_limits": False, "upstream_timeout_seconds": 120.0},
        events={
            "relay_interval_seconds": 0.05,
            "outbox_retention_seconds": 3600,
            "check_payloads": True,  # events fit what /asyncapi.json documents
        },
    )
    async for world in payments_world(settings, postgres_database):
        yield world
