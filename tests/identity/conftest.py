from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.conftest import http_client
from tests.identity.factories import ISSUER


@pytest.fixture
async def identity_platform(make_platform: Callable[..., Any], settings: Any) -> Platform:
    platform: Platform = await make_platform(
        ["identity"], settings_override=settings.model_copy(update={"public_url": ISSUER})
    )
    return platform


@pytest.fixture
async def identity(identity_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous HTTP client on the identity service (at the issuer's origin)."""
    async with http_client(identity_platform) as client:
        client.base_url = httpx.URL(ISSUER)
        yield client
