"""Which address the gateway's limits and allow lists see: the TCP peer, or — only when the
peer is one of our own proxies — the first address of the X-Forwarded-For chain that none
of our proxies added."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from paymesh.gateway.inbound import client_address
from paymesh.kernel.config import Settings
from paymesh.platform import Platform

PROXIES = [ipaddress.ip_network("10.0.0.0/8")]


def scope(peer: str, forwarded_for: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
    return {"type": "http", "client": (peer, 50000), "headers": headers}


@pytest.mark.parametrize(
    ("peer", "chain", "expected"),
    [
        ("203.0.113.7", None, "203.0.113.7"),  # no proxy in front
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # an untrusted peer's claim: ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),  # our load balancer saw this client
        ("10.0.0.2", "1.2.3.4, 198.51.100.1", "198.51.100.1"),  # a forged start is skipped
        ("10.0.0.2", "198.51.100.1, 10.0.0.9", "198.51.100.1"),  # two of our proxies
        ("10.0.0.2", "not-an-address", "10.0.0.2"),  # garbage: stop at the proxy
        ("10.0.0.2", None, "10.0.0.2"),
    ],
)
def test_the_client_address(peer: str, chain: str | None, expected: str) -> None:
    assert client_address(scope(peer, chain), PROXIES) == ipaddress.ip_address(expected)


def test_a_bad_proxy_network_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        Settings(_env_file=None, gateway={"trusted_proxies": ["10.0.0.0/33"]})


async def test_clients_behind_our_proxy_get_their_own_anonymous_budget(
    make_platform: Callable[..., Any], settings: Settings
) -> None:
    gateway = settings.gateway.model_copy(
        update={
            "rate_limits": True,
            "anonymous_per_minute": 2,
            "trusted_proxies": ["127.0.0.0/8"],  # the test transport's peer is 127.0.0.1
        }
    )
    platform: Platform = await make_platform(
        ["identity"],
        run_workers=False,
        settings_override=settings.model_copy(update={"gateway": gateway}),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=platform), base_url="http://paymesh.test"
    ) as client:

        async def discovery(client_ip: str) -> int:
            response = await client.get(
                "/.well-known/openid-configuration", headers={"x-forwarded-for": client_ip}
            )
            return response.status_code

        first = [await discovery("198.51.100.1") for _ in range(3)]
        second = [await discovery("198.51.100.2") for _ in range(2)]

    assert first == [200, 200, 429]
    assert second == [200, 200]
