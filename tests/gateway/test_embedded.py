"""The gateway in the embedded shape: every public request of `paymesh up` passes its
policies before the in-process service sees it. Real identity and ledger, real tokens."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import structlog
from starlette.types import Receive, Scope, Send

from paymesh.gateway.upstreams import InProcessUpstream
from paymesh.kernel.config import Settings
from paymesh.kernel.observability import configure_logging
from paymesh.kernel.revocation import Revocation
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.identity import factories

ACCOUNT = "/v1/ledger/accounts/acc_missing"


class CountingUpstream:
    """Wraps a platform's upstream and counts what reaches the service."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.requests: list[str] = []

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, *, timeout_seconds: float
    ) -> None:
        self.requests.append(scope["path"])
        await self.inner.forward(scope, receive, send, timeout_seconds=timeout_seconds)


def counting(platform: Platform, service: str) -> CountingUpstream:
    upstream = CountingUpstream(platform.gateway.upstreams[service])
    platform.gateway.upstreams = {**platform.gateway.upstreams, service: upstream}
    return upstream


def with_gateway(settings: Settings, **gateway: Any) -> Settings:
    merged = {**settings.gateway.model_dump(), **gateway}
    return settings.model_copy(update={"gateway": type(settings.gateway)(**merged)})


@pytest.fixture
async def platform(make_platform: Callable[..., Any]) -> Platform:
    built: Platform = await make_platform(["identity", "ledger"], run_workers=False)
    return built


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(platform) as http:
        yield http


def bearer(platform: Platform, subject: str = "alice", **claims: Any) -> dict[str, str]:
    token = platform.tokens.issue(subject, roles=claims.pop("roles", ["customer"]), **claims)
    return {"authorization": f"Bearer {token}"}


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


class TestAuthentication:
    async def test_no_token_is_401_before_the_service(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        ledger = counting(platform, "ledger")

        response = await client.get(ACCOUNT)

        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == 'Bearer realm="paymesh"'
        assert response.json()["code"] == "unauthenticated"
        assert ledger.requests == []

    @pytest.mark.parametrize("kind", ["garbage", "tampered", "expired", "alg_none"])
    async def test_a_bad_token_is_invalid_token(
        self, platform: Platform, client: httpx.AsyncClient, kind: str
    ) -> None:
        ledger = counting(platform, "ledger")
        good = platform.tokens.issue("alice", roles=["customer"])
        _header, payload, _signature = good.split(".")
        none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=")
        token = {
            "garbage": "not-a-jwt",
            "tampered": tampered(good),
            "expired": platform.tokens.issue("alice", roles=["customer"], ttl_seconds=-120),
            "alg_none": f"{none_header.decode()}.{payload}.",
        }[kind]

        response = await client.get(ACCOUNT, headers={"authorization": f"Bearer {token}"})

        assert response.status_code == 401, response.text
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="paymesh", error="invalid_token"')
        assert ledger.requests == []

    async def test_a_good_token_reaches_the_service(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        ledger = counting(platform, "ledger")

        response = await client.get(ACCOUNT, headers=bearer(platform, roles=["admin"]))

        assert response.status_code == 404  # the ledger's answer: no such account
        assert response.json()["code"] != "not_found" or "account" in response.text
        assert ledger.requests == [ACCOUNT]

    async def test_public_routes_need_no_token(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        identity = counting(platform, "identity")

        discovery = await client.get("/.well-known/openid-configuration")
        registration = await client.post("/v1/identity/users", json={})

        assert discovery.status_code == 200
        assert registration.status_code == 422  # identity validated it: it got through
        assert identity.requests == ["/.well-known/openid-configuration", "/v1/identity/users"]
        listing = await client.get("/v1/identity/users")  # same path, GET: authenticated
        assert listing.status_code == 401
        assert len(identity.requests) == 2

    async def test_a_revoked_token_never_reaches_an_upstream(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        ledger = counting(platform, "ledger")
        headers = bearer(platform, "mallory", roles=["admin"])
        assert (await client.get(ACCOUNT, headers=headers)).status_code == 404

        # What identity publishes when it disables a user (tests/identity covers that).
        now = time.time()
        await platform.revocations.publish(
            [Revocation(kind="subject", value="mallory", not_before=now + 1, expires_at=now + 900)]
        )
        response = await client.get(ACCOUNT, headers=headers)

        assert response.status_code == 401
        assert ledger.requests == [ACCOUNT]

    async def test_scim_refusals_are_scim_errors(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/scim2/Users")

        assert response.status_code == 401
        assert response.headers["content-type"] == "application/scim+json"
        body = response.json()
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert body["status"] == "401"


class TestRoutePolicies:
    @pytest.fixture
    async def platform(self, make_platform: Callable[..., Any], settings: Settings) -> Platform:
        tuned = with_gateway(
            settings,
            routes=[
                {"prefix": "/v1/ledger/transfers", "scopes": ["ledger:admin"], "roles": ["admin"]},
                {"prefix": "/v1/ledger/statements", "deny": ["127.0.0.0/8"]},
                {"prefix": "/v1/ledger/trial-balance", "allow": ["10.0.0.0/8"]},
            ],
        )
        built: Platform = await make_platform(
            ["identity", "ledger"], run_workers=False, settings_override=tuned
        )
        return built

    async def test_missing_scope_is_403_insufficient_scope(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        ledger = counting(platform, "ledger")
        headers = bearer(platform, roles=["customer"], scopes=["ledger:read"])

        response = await client.get("/v1/ledger/transfers", headers=headers)

        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
        assert 'scope="ledger:admin"' in response.headers["www-authenticate"]
        assert ledger.requests == []

    async def test_the_route_role_lets_the_caller_through(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        ledger = counting(platform, "ledger")

        headers = bearer(platform, roles=["admin"], scopes=["ledger:admin"])
        await client.get("/v1/ledger/transfers", headers=headers)

        assert ledger.requests == ["/v1/ledger/transfers"]

    async def test_address_lists(self, platform: Platform, client: httpx.AsyncClient) -> None:
        ledger = counting(platform, "ledger")
        headers = bearer(platform, roles=["admin"])

        denied = await client.get("/v1/ledger/statements/acc_1", headers=headers)
        not_allowed = await client.get("/v1/ledger/trial-balance", headers=headers)

        for response in (denied, not_allowed):
            assert response.status_code == 403
            assert response.json()["code"] == "address_refused"
        assert ledger.requests == []

    def test_a_route_outside_every_service_is_refused_at_start(self, settings: Settings) -> None:
        tuned = with_gateway(settings, routes=[{"prefix": "/v2/nothing"}])
        with pytest.raises(ValueError, match="under no service"):
            Platform(tuned, ["ledger"])


class TestBodyLimit:
    async def test_a_declared_body_over_the_limit_is_413_before_the_service(
        self, platform: Platform, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        ledger = counting(platform, "ledger")
        body = b"{" + b" " * settings.max_body_bytes + b"}"

        response = await client.post(
            "/v1/ledger/accounts", content=body, headers=bearer(platform, roles=["admin"])
        )

        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
        assert ledger.requests == []

    async def test_a_chunked_body_over_the_limit_is_413_before_the_service(
        self, platform: Platform, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        ledger = counting(platform, "ledger")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(settings.max_body_bytes // 65536 + 2):
                yield b" " * 65536

        response = await client.post(
            "/v1/ledger/accounts", content=chunks(), headers=bearer(platform, roles=["admin"])
        )

        assert response.status_code == 413
        assert ledger.requests == []


class TestHeaders:
    async def test_security_headers_and_no_store(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/.well-known/openid-configuration")

        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in response.headers  # http origin

    async def test_the_request_id_survives_the_hop_to_the_service(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        headers = {**bearer(platform, roles=["admin"]), "x-request-id": "req-gateway-1"}

        response = await client.get(ACCOUNT, headers=headers)

        assert response.headers["x-request-id"] == "req-gateway-1"
        # The ledger wrote its problem document with the id it saw.
        assert response.json()["request_id"] == "req-gateway-1"

    async def test_a_malformed_request_id_is_replaced(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        headers = {**bearer(platform, roles=["admin"]), "x-request-id": "bad id\twith spaces"}

        response = await client.get(ACCOUNT, headers=headers)

        new_id = response.headers["x-request-id"]
        assert new_id != "bad id\twith spaces"
        assert response.json()["request_id"] == new_id

    async def test_forwarded_headers_reach_the_service(self, platform: Platform) -> None:
        seen: dict[str, str] = {}
        inner = platform.gateway.upstreams["identity"]

        class Spy(CountingUpstream):
            async def forward(
                self, scope: Scope, receive: Receive, send: Send, *, timeout_seconds: float
            ) -> None:
                seen.update({k.decode(): v.decode() for k, v in scope["headers"]})
                await inner.forward(scope, receive, send, timeout_seconds=timeout_seconds)

        platform.gateway.upstreams = {**platform.gateway.upstreams, "identity": Spy(inner)}
        async with http_client(platform) as http:
            await http.get(
                "/.well-known/openid-configuration",
                headers={
                    "x-forwarded-for": "203.0.113.9",
                    "connection": "keep-alive, x-drop",
                    "x-drop": "1",
                },
            )

        assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == "paymesh.test"
        assert "x-drop" not in seen and "connection" not in seen


class TestRateLimits:
    @pytest.fixture
    async def platform(self, make_platform: Callable[..., Any], settings: Settings) -> Platform:
        tuned = with_gateway(
            settings, rate_limits=True, anonymous_per_minute=3, burst_per_second=50
        )
        built: Platform = await make_platform(
            ["identity", "ledger"], run_workers=False, settings_override=tuned
        )
        return built

    async def test_the_anonymous_tier_per_address(self, client: httpx.AsyncClient) -> None:
        answers = [await client.get("/.well-known/openid-configuration") for _ in range(4)]

        assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
        assert [answer.headers["ratelimit-remaining"] for answer in answers[:3]] == ["2", "1", "0"]
        assert answers[0].headers["ratelimit-limit"] == "3"
        refused = answers[3]
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60

    async def test_a_tier_per_client_not_per_address(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        response = await client.get(ACCOUNT, headers=bearer(platform, roles=["admin"]))

        assert response.headers["ratelimit-limit"] == "1000"  # bronze: no tier claim

    async def test_a_burst_is_refused_then_recovers(
        self, make_platform: Callable[..., Any], settings: Settings
    ) -> None:
        tuned = with_gateway(settings, rate_limits=True, burst_per_second=2)
        platform: Platform = await make_platform(
            ["identity", "ledger"], run_workers=False, settings_override=tuned
        )
        headers = bearer(platform, roles=["admin"])
        async with http_client(platform) as http:
            # At once: one after another, a loaded machine can spread them over more than
            # the burst's one-second window.
            burst = await asyncio.gather(*(http.get(ACCOUNT, headers=headers) for _ in range(3)))
            assert sorted(answer.status_code for answer in burst) == [404, 404, 429]
            await asyncio.sleep(1.1)
            assert (await http.get(ACCOUNT, headers=headers)).status_code == 404


class TestDocs:
    async def test_docs_and_openapi_through_the_gateway(self, client: httpx.AsyncClient) -> None:
        docs = await client.get("/docs")
        redoc = await client.get("/redoc")
        document = (await client.get("/openapi.json")).json()

        assert docs.status_code == redoc.status_code == 200
        assert "https://" not in docs.text
        account = document["paths"]["/v1/ledger/accounts/{account_id}"]["get"]
        assert account["security"]
        assert "RateLimit-Limit" in account["responses"]["200"]["headers"]
        assert "429" in account["responses"]


class TestUpstreamFailures:
    @pytest.fixture
    async def platform(self, make_platform: Callable[..., Any], settings: Settings) -> Platform:
        tuned = with_gateway(
            settings,
            routes=[{"prefix": "/v1/ledger/accounts", "timeout_seconds": 0.2}],
            breaker_threshold=2,
            breaker_ttl_seconds=0.5,
        )
        built: Platform = await make_platform(
            ["identity", "ledger"], run_workers=False, settings_override=tuned
        )
        return built

    def stall(self, platform: Platform, seconds: float) -> None:
        async def slow(scope: Scope, receive: Receive, send: Send) -> None:
            await asyncio.sleep(seconds)

        platform.gateway.upstreams = {
            **platform.gateway.upstreams,
            "ledger": InProcessUpstream("ledger", slow),
        }

    async def test_a_slow_upstream_is_504_then_the_breaker_opens_and_closes(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        working = platform.gateway.upstreams["ledger"]
        headers = bearer(platform, roles=["admin"])
        self.stall(platform, 5)

        first = await client.get(ACCOUNT, headers=headers)
        second = await client.get(ACCOUNT, headers=headers)
        third = await client.get(ACCOUNT, headers=headers)

        assert [first.status_code, second.status_code] == [504, 504]
        assert first.json()["code"] == "upstream_timeout"
        assert third.status_code == 503  # open: refused without waiting
        assert third.json()["code"] == "upstream_unavailable"
        platform.gateway.upstreams = {**platform.gateway.upstreams, "ledger": working}
        await asyncio.sleep(0.6)  # past the breaker's ttl: the next request is a probe
        assert (await client.get(ACCOUNT, headers=headers)).status_code == 404
        assert (await client.get(ACCOUNT, headers=headers)).status_code == 404

    async def test_other_services_are_unaffected_by_an_open_breaker(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        headers = bearer(platform, roles=["admin"])
        self.stall(platform, 5)
        for _ in range(3):
            await client.get(ACCOUNT, headers=headers)

        response = await client.get("/.well-known/openid-configuration")

        assert response.status_code == 200


class TestTiers:
    @pytest.fixture
    async def platform(self, make_platform: Callable[..., Any], settings: Settings) -> Platform:
        built: Platform = await make_platform(
            ["identity", "ledger"],
            run_workers=False,
            settings_override=with_gateway(settings, rate_limits=True),
        )
        return built

    async def client_token(self, platform: Platform, client: httpx.AsyncClient, tier: str) -> str:
        app = await factories.create_client(
            platform,
            public=False,
            grant_types=["client_credentials"],
            redirect_uris=[],
            scopes=["ledger:read"],
            roles=["auditor"],
            rate_limit_tier=tier,
        )
        response = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "ledger:read"},
            auth=(app.client_id, app.client_secret or ""),
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    @pytest.mark.parametrize(
        ("tier", "limit"), [("gold", "5000"), ("silver", "2000"), ("bronze", "1000")]
    )
    async def test_a_clients_tier_sets_its_limit(
        self, platform: Platform, client: httpx.AsyncClient, tier: str, limit: str
    ) -> None:
        token = await self.client_token(platform, client, tier)

        response = await client.get(ACCOUNT, headers={"authorization": f"Bearer {token}"})

        assert response.status_code == 404  # identity's RS256 token passed the gateway
        assert response.headers["ratelimit-limit"] == limit
        assert int(response.headers["ratelimit-remaining"]) == int(limit) - 1

    async def test_an_unlimited_client_is_not_counted(
        self, platform: Platform, client: httpx.AsyncClient
    ) -> None:
        token = await self.client_token(platform, client, "unlimited")

        response = await client.get(ACCOUNT, headers={"authorization": f"Bearer {token}"})

        assert response.status_code == 404
        assert "ratelimit-limit" not in response.headers


class TestAccessLogAndCors:
    @pytest.fixture
    async def platform(self, make_platform: Callable[..., Any], settings: Settings) -> Platform:
        tuned = with_gateway(settings, cors_origins=["https://shop.example"]).model_copy(
            update={"access_log": True}
        )
        built: Platform = await make_platform(
            ["identity", "ledger"], run_workers=False, settings_override=tuned
        )
        return built

    async def test_one_json_line_per_request_without_secrets(
        self, platform: Platform, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        previous = structlog.get_config()
        configure_logging("INFO", "json")
        structlog.configure(cache_logger_on_first_use=False)
        headers = bearer(platform, "auditor-1", roles=["admin"])
        try:
            await client.get(ACCOUNT, headers={**headers, "x-request-id": "req-log-7"})
        finally:
            structlog.configure(**previous)

        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        [line] = [line for line in lines if line["event"] == "gateway_request"]
        assert line["method"] == "GET" and line["path"] == ACCOUNT
        assert line["status"] == 404 and line["upstream"] == "ledger"
        assert line["subject"] == "auditor-1" and line["client_id"] == "paymesh-dev"
        assert line["request_id"] == "req-log-7" and line["latency_ms"] >= 0
        token = headers["authorization"].removeprefix("Bearer ")
        assert token not in stream.getvalue()
        assert token.split(".")[2] not in stream.getvalue()

    async def test_cors_preflight_is_answered_before_authentication(
        self, client: httpx.AsyncClient
    ) -> None:
        preflight = await client.options(
            ACCOUNT,
            headers={
                "origin": "https://shop.example",
                "access-control-request-method": "GET",
                "access-control-request-headers": "authorization",
            },
        )
        foreign = await client.options(
            ACCOUNT,
            headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
        )

        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        assert foreign.status_code == 400
        assert "access-control-allow-origin" not in foreign.headers
