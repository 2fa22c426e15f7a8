"""The `tier` claim: every access token identity issues names its client's rate-limit tier
as it was when the token was signed."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import sqlalchemy
from joserfc import jwt

from paymesh.identity import models as tables
from paymesh.identity import repository
from paymesh.identity import revocation as identity_revocation
from paymesh.kernel.oidc import service_client_id, service_client_secret
from paymesh.kernel.revocation import Revocation
from paymesh.platform import Platform
from tests.identity import accounts as a
from tests.identity import factories as f

CLIENTS = "/v1/identity/clients"


@pytest.fixture
def admin(identity_platform: Platform) -> dict[str, str]:
    return a.bearer(identity_platform, "usr_admin", ("admin",))


def claims(platform: Platform, token: str) -> dict[str, Any]:
    """The claims of `token`, once its signature checks out against identity's keys."""
    keys = platform.runtimes["identity"].state["provider"].keys.key_set()
    decoded: dict[str, Any] = jwt.decode(token, keys).claims
    return decoded


async def client_credentials(client: httpx.AsyncClient, client_id: str, secret: str) -> str:
    response = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def set_tier(
    client: httpx.AsyncClient, headers: dict[str, str], client_id: str, tier: str
) -> None:
    response = await client.put(
        f"{CLIENTS}/{client_id}/rate-limit-tier", json={"rate_limit_tier": tier}, headers=headers
    )
    assert response.status_code == 200, response.text


class TestClientCredentialsToken:
    async def test_tier_claim_follows_an_update_from_the_next_token_on(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        app = await f.create_client(
            identity_platform,
            public=False,
            grant_types=["client_credentials"],
            redirect_uris=[],
            scopes=[],
            roles=["merchant"],
        )
        assert app.client_secret is not None
        before = await client_credentials(identity, app.client_id, app.client_secret)
        await set_tier(identity, admin, app.client_id, "gold")
        after = await client_credentials(identity, app.client_id, app.client_secret)
        assert claims(identity_platform, before)["tier"] == "bronze"
        assert claims(identity_platform, after)["tier"] == "gold"

    async def test_platform_service_account_is_unlimited(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        client_id = service_client_id("ledger")
        secret = service_client_secret(identity_platform.settings, "ledger")
        token = await client_credentials(identity, client_id, secret)
        assert claims(identity_platform, token)["tier"] == "unlimited"

    async def test_introspection_reports_the_tier(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        client_id, secret = await f.create_service_client(
            identity_platform, rate_limit_tier="silver"
        )
        token = await client_credentials(identity, client_id, secret)
        response = await identity.post(
            "/oauth2/introspect",
            data={"token": token},
            auth=(client_id, secret),
        )
        assert response.json()["active"] is True
        assert response.json()["tier"] == "silver"


class TestUserTokens:
    async def test_code_and_refresh_tokens_carry_the_tier_at_issue(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        await f.create_user(identity_platform)
        app = await f.create_client(identity_platform, rate_limit_tier="silver")
        pkce = f.Pkce.make()
        code = await f.authorization_code(identity, app.client_id, pkce)
        issued = (await f.exchange_code(identity, app.client_id, code, pkce.verifier)).json()
        await set_tier(identity, admin, app.client_id, "unlimited")
        refreshed = await identity.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": issued["refresh_token"],
                "client_id": app.client_id,
            },
        )
        assert refreshed.status_code == 200, refreshed.text
        assert claims(identity_platform, issued["access_token"])["tier"] == "silver"
        assert claims(identity_platform, refreshed.json()["access_token"])["tier"] == "unlimited"


async def grant(client: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )


class TestClientCache:
    """The token endpoint keeps clients' registrations in memory between grants
    (`provider.server.ClientCache`); every change reaches the next grant."""

    @pytest.fixture(autouse=True)
    def no_commit_margin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A notice's stamp lies `COMMIT_MARGIN_SECONDS` ahead: until then every grant
        reads the client again (registering one is a change too). These tests keep no
        margin, so the copy counts at once."""
        monkeypatch.setattr(identity_revocation, "COMMIT_MARGIN_SECONDS", 0.0)

    async def confidential(self, platform: Platform) -> tuple[str, str]:
        return await f.create_service_client(platform)

    async def test_a_second_grant_reads_no_client_row(
        self,
        identity_platform: Platform,
        identity: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        client_id, secret = await self.confidential(identity_platform)
        reads: list[str] = []
        original = repository.read_client_record

        async def counting(source: Any, wanted: str) -> Any:
            reads.append(wanted)
            return await original(source, wanted)

        monkeypatch.setattr(repository, "read_client_record", counting)
        for _ in range(3):
            assert (await grant(identity, client_id, secret)).status_code == 200
        assert reads == [client_id]
        # A wrong secret is checked against the kept copy: still refused.
        assert (await grant(identity, client_id, "not-the-secret")).status_code == 401
        # An unknown client is never kept: each grant asks the database.
        for _ in range(2):
            assert (await grant(identity, "cli_nobody", "x")).status_code == 401
        assert reads == [client_id, "cli_nobody", "cli_nobody"]

    async def test_each_admin_change_reaches_the_next_grant(
        self, identity_platform: Platform, identity: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        client_id, secret = await self.confidential(identity_platform)
        assert (await grant(identity, client_id, secret)).status_code == 200  # kept
        path = f"{CLIENTS}/{client_id}"

        assert (await identity.post(f"{path}/disable", headers=admin)).status_code == 200
        refused = await grant(identity, client_id, secret)
        assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
        assert (await identity.post(f"{path}/enable", headers=admin)).status_code == 200
        assert (await grant(identity, client_id, secret)).status_code == 200

        await set_tier(identity, admin, client_id, "gold")
        token = (await grant(identity, client_id, secret)).json()["access_token"]
        assert claims(identity_platform, token)["tier"] == "gold"

        rotated = await identity.post(f"{path}/secret", headers=admin)
        assert rotated.status_code == 200, rotated.text
        assert (await grant(identity, client_id, secret)).status_code == 401  # the old one
        fresh = rotated.json()["client_secret"]
        assert (await grant(identity, client_id, fresh)).status_code == 200

        assert (await identity.delete(path, headers=admin)).status_code == 204
        assert (await grant(identity, client_id, fresh)).status_code == 401

    async def test_a_change_made_elsewhere_counts_once_its_notice_arrives(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        """Another process's change reaches this one as a `client_record` notice through
        the revocation feed; until then this process answers from its copy."""
        client_id, secret = await self.confidential(identity_platform)
        assert (await grant(identity, client_id, secret)).status_code == 200
        runtime = identity_platform.runtimes["identity"]
        async with runtime.database.transaction() as session:  # behind the cache's back
            await session.execute(
                sqlalchemy.update(tables.Client)
                .where(tables.Client.id == client_id)
                .values(rate_limit_tier="silver")
            )
        token = (await grant(identity, client_id, secret)).json()["access_token"]
        assert claims(identity_platform, token)["tier"] == "bronze"  # the copy
        now = time.time()
        runtime.revocations.apply([Revocation("client_record", client_id, now, now + 300)])
        token = (await grant(identity, client_id, secret)).json()["access_token"]
        assert claims(identity_platform, token)["tier"] == "silver"


class TestTokenFastPath:
    """Form-encoded token requests take identity's fast path (`identity/fastpath.py`),
    behind the same decoding layer; hostile bodies are refused, never a crash."""

    async def test_hostile_form_bodies_are_refused(self, identity: httpx.AsyncClient) -> None:
        form = {"content-type": "application/x-www-form-urlencoded"}
        many = "&".join(f"f{index}=x" for index in range(1001))
        for body in (
            many.encode(),
            b"grant_type=%ff%fe",
            b"grant_type=%ed%a0%80",
            b"grant_type=\x00",
            b"\x00",
            b"%",
        ):
            response = await identity.post("/oauth2/token", content=body, headers=form)
            assert 400 <= response.status_code < 500, (body[:20], response.text)

    async def test_repeated_parameters_are_an_invalid_request(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        client_id, secret = await f.create_service_client(identity_platform)
        response = await identity.post(
            "/oauth2/token",
            content=b"grant_type=client_credentials&grant_type=client_credentials",
            headers={"content-type": "application/x-www-form-urlencoded"},
            auth=(client_id, secret),
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
        # A repeated name outside RFC 6749's error characters is not echoed (nor a 500).
        hostile = await identity.post(
            "/oauth2/token",
            content=b"grant_type=client_credentials&%C2%A5%5C=1&%C2%A5%5C=2",
            headers={"content-type": "application/x-www-form-urlencoded"},
            auth=(client_id, secret),
        )
        assert hostile.status_code == 400, hostile.text
        assert hostile.json() == {
            "error": "invalid_request",
            "error_description": "a parameter is repeated",
        }

    async def test_a_json_body_takes_the_route_and_is_refused_as_oauth2_does(
        self, identity: httpx.AsyncClient
    ) -> None:
        response = await identity.post("/oauth2/token", json={"grant_type": "client_credentials"})
        assert response.status_code == 400, response.text
        assert response.json()["error"] in ("invalid_request", "unsupported_grant_type")
