from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paymesh.platform import Platform
from tests.conftest import http_client
from tests.kernel.sample.app import SPEC


@pytest.fixture
async def sample(make_platform: Callable[..., Any]) -> Platform:
    platform: Platform = await make_platform(specs=[SPEC])
    return platform


@pytest.fixture
async def client(sample: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(sample) as client:
        yield client


@pytest.fixture
def admin_token(sample: Platform) -> str:
    return sample.tokens.issue("usr_admin", roles=["admin"])
