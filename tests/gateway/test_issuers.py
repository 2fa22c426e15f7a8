"""External OpenID providers at the gateway: an independent provider (the npm package
`oidc-provider`, on loopback with its own keys) issues client-credentials tokens; the
platform accepts them once the provider is a trusted issuer, and refuses them otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from paymesh.kernel.config import Settings, TrustedIssuerSettings
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.kernel.issuers import node_or_skip, oidc_provider, provider_token

AUDIENCE = "https://api.paymesh.example"  # tests/kernel/issuer/server.mjs's resource
TRIAL_BALANCE = "/v1/ledger/trial-balance"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    node = node_or_skip()
    with oidc_provider(node, tmp_path_factory.mktemp("oidc-provider") / "server.log") as issuer:
        yield issuer


def trusting(settings: Settings, issuer: str, **entry: Any) -> Settings:
    gateway = settings.gateway.model_copy(
        update={"issuers": [TrustedIssuerSettings(issuer=issuer, **entry)], "rate_limits": True}
    )
    return settings.model_copy(update={"gateway": gateway})


async def read_trial_balance(platform: Platform, token: str) -> httpx.Response:
    async with http_client(platform) as client:
        return await client.get(TRIAL_BALANCE, headers={"authorization": f"Bearer {token}"})


class TestExternalIssuer:
    async def test_its_tokens_are_refused_until_it_is_trusted(
        self, make_platform: Callable[..., Any], provider: str
    ) -> None:
        platform: Platform = await make_platform(["ledger"], run_workers=False)

        response = await read_trial_balance(platform, provider_token(provider))

        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert "issuer" in response.json()["detail"]

    async def test_a_trusted_issuers_token_reaches_the_service_with_its_roles_and_tier(
        self, make_platform: Callable[..., Any], settings: Settings, provider: str
    ) -> None:
        tuned = trusting(
            settings, provider, audience=AUDIENCE, roles_claim="realm_access.roles", tier="gold"
        )
        platform: Platform = await make_platform(
            ["ledger"], run_workers=False, settings_override=tuned
        )

        response = await read_trial_balance(platform, provider_token(provider))

        # Its realm role `auditor` and scope `ledger:read` let it read the trial balance.
        assert response.status_code == 200, response.text
        assert response.headers["ratelimit-limit"] == "5000"  # the issuer's tier: gold

    async def test_the_wrong_audience_is_refused(
        self, make_platform: Callable[..., Any], settings: Settings, provider: str
    ) -> None:
        tuned = trusting(settings, provider, audience="https://someone-else.example")
        platform: Platform = await make_platform(
            ["ledger"], run_workers=False, settings_override=tuned
        )

        response = await read_trial_balance(platform, provider_token(provider))

        assert response.status_code == 401
