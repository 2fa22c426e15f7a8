"""The risk tests' worlds: one per module for tests that only add their own customers and
decisions (each test uses fresh customers, so velocity and limits never leak between
tests), a fresh one per test where the active rule set changes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from paymesh.kernel.config import Settings
from tests.risk.support import RiskWorld, risk_world


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_world(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
) -> AsyncIterator[RiskWorld]:
    """For modules marked `pytest.mark.asyncio(loop_scope="module")`."""
    settings = Settings(
        _env_file=None,
        env="test",
        data_dir=tmp_path_factory.mktemp("risk") / "var",
        database_url=postgres_database,
        access_log=False,
        gateway={"rate_limits": False},
        events={
            "relay_interval_seconds": 0.05,
            "outbox_retention_seconds": 3600,
            "check_payloads": True,  # events fit what /asyncapi.json documents
        },
    )
    async for world in risk_world(settings, postgres_database):
        yield world


@pytest.fixture
async def world(settings: Settings, postgres_database: str | None) -> AsyncIterator[RiskWorld]:
    async for created in risk_world(settings, postgres_database):
        yield created
