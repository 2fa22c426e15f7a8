from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from tests.conftest import http_client


@pytest.fixture
async def ledger_platform(make_platform: Callable[..., Any]) -> Platform:
    platform: Platform = await make_platform(["ledger"])
    return platform


@pytest.fixture
async def ledger(ledger_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the ledger, authenticated as a service account."""
    token = ledger_platform.tokens.issue("service:payments", roles=["service"], scopes=["ledger"])
    async with http_client(ledger_platform) as client:
        client.headers["authorization"] = f"Bearer {token}"
        yield client


@pytest.fixture
async def expiring_platform(make_platform: Callable[..., Any], settings: Settings) -> Platform:
    """A ledger whose pending-transfer expiry job runs every 0.1 s."""
    ledger = settings.ledger.model_copy(update={"expiry_interval_seconds": 0.1})
    platform: Platform = await make_platform(
        ["ledger"], settings_override=settings.model_copy(update={"ledger": ledger})
    )
    return platform
