"""Fixtures the profiles and providers tests share (each conftest imports them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from paymesh.kernel.config import Settings
from paymesh.platform import Platform
from paymesh.providers.simulators.kyc import KycSimulator
from tests.conftest import http_client
from tests.profiles.support import (
    NOWHERE,
    SERVICES,
    loopback_socket,
    serving,
    url_of,
    with_providers,
)


@pytest.fixture
async def platform(make_platform: Callable[..., Any], settings: Settings) -> Platform:
    """Identity, profiles and providers, reached in process; the KYC vendor is nowhere."""
    result: Platform = await make_platform(
        SERVICES, settings_override=with_providers(settings, kyc_vendor_url=NOWHERE)
    )
    return result


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(platform) as client:
        yield client


@dataclass
class World:
    """The platform served on a loopback port (the simulator's callbacks reach it over real
    HTTP, through the gateway) and the KYC vendor simulator on another."""

    platform: Platform
    simulator: KycSimulator
    http: httpx.AsyncClient
    origin: str


@pytest.fixture
async def world(make_platform: Callable[..., Any], settings: Settings) -> AsyncIterator[World]:
    platform_socket, vendor_socket = loopback_socket(), loopback_socket()
    origin = url_of(platform_socket)
    configured = with_providers(
        settings.model_copy(update={"public_url": origin}),
        kyc_vendor_url=url_of(vendor_socket),
        kyc_simulator_delay_seconds=0.05,
    )
    simulator = KycSimulator.from_settings(configured)
    async with serving(simulator.app(), vendor_socket, lifespan="on"):
        platform: Platform = await make_platform(SERVICES, settings_override=configured)
        async with (
            serving(platform, platform_socket),
            httpx.AsyncClient(base_url=origin, timeout=30) as client,
        ):
            yield World(platform, simulator, client, origin)
