from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog

from paymesh.kernel.observability import configure_logging
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.kernel.sample import app as sample_app
from tests.kernel.sample.app import SPEC


@pytest.fixture(autouse=True, scope="package")
def _production_logging() -> Iterator[None]:
    """Log as production does (JSON lines, plain tracebacks), not structlog's default of
    rich tracebacks with locals, which costs over a second per logged exception."""
    previous = structlog.get_config()
    configure_logging("INFO", "json")
    # Cached loggers would keep this configuration after the package is done.
    structlog.configure(cache_logger_on_first_use=False)
    yield
    structlog.configure(**previous)


@pytest.fixture(autouse=True)
def _reset_sample() -> Iterator[None]:
    sample_app.reset()
    yield
    for event in sample_app.gate.values():
        event.set()  # never leave a request waiting on a gate
    sample_app.reset()


@pytest.fixture
async def sample(make_platform: Callable[..., Any]) -> Platform:
    platform: Platform = await make_platform(specs=[SPEC])
    return platform


@pytest.fixture
async def idle_sample(make_platform: Callable[..., Any]) -> Platform:
    """The sample service without background workers: tests drive relay and queue by hand."""
    platform: Platform = await make_platform(specs=[SPEC], run_workers=False)
    return platform


@pytest.fixture
async def client(sample: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(sample) as client:
        yield client


@pytest.fixture
def admin_token(sample: Platform) -> str:
    return sample.tokens.issue("usr_admin", roles=["admin"])


@pytest.fixture
def customer_token(sample: Platform) -> str:
    return sample.tokens.issue("usr_customer", roles=["customer"])
