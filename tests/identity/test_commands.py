"""`paymesh identity ...` run in process (typer's runner) against the test database: the
commands that set and show a client's rate-limit tier."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from click.testing import Result
from joserfc import jwt
from typer.testing import CliRunner

from paymesh.identity import commands
from paymesh.platform import Platform
from tests.identity import accounts as a
from tests.identity import factories as f


@pytest.fixture
def paymesh_identity(identity_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner for the `identity` commands, on the database `identity_platform` uses."""
    monkeypatch.setattr(commands, "_loader", [lambda: identity_platform.settings])
    return CliRunner()


async def run(runner: CliRunner, *args: str) -> Result:
    # The commands run their own event loop (asyncio.run): not on the test's.
    return await asyncio.to_thread(runner.invoke, commands.commands, list(args))


async def shown_tier(platform: Platform, client: httpx.AsyncClient, client_id: str) -> str:
    admin = a.bearer(platform, "usr_admin", ("admin",))
    response = await client.get(f"/v1/identity/clients/{client_id}", headers=admin)
    assert response.status_code == 200, response.text
    return str(response.json()["rate_limit_tier"])


class TestSetClientTier:
    async def test_sets_the_tier(
        self,
        identity_platform: Platform,
        identity: httpx.AsyncClient,
        paymesh_identity: CliRunner,
    ) -> None:
        app = await f.create_client(identity_platform)
        result = await run(paymesh_identity, "set-client-tier", app.client_id, "gold")
        assert result.exit_code == 0, result.output
        assert f"client {app.client_id}: rate-limit tier bronze -> gold" in result.output
        assert await shown_tier(identity_platform, identity, app.client_id) == "gold"

    async def test_json_output_is_the_client(
        self, identity_platform: Platform, paymesh_identity: CliRunner
    ) -> None:
        app = await f.create_client(identity_platform)
        result = await run(
            paymesh_identity, "set-client-tier", app.client_id, "unlimited", "--json"
        )
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert (shown["client_id"], shown["rate_limit_tier"]) == (app.client_id, "unlimited")

    async def test_unknown_tier_is_a_usage_error_and_changes_nothing(
        self,
        identity_platform: Platform,
        identity: httpx.AsyncClient,
        paymesh_identity: CliRunner,
    ) -> None:
        app = await f.create_client(identity_platform, rate_limit_tier="silver")
        result = await run(paymesh_identity, "set-client-tier", app.client_id, "platinum")
        assert result.exit_code == 2
        assert "platinum" in result.output
        assert await shown_tier(identity_platform, identity, app.client_id) == "silver"

    async def test_unknown_client_fails(self, paymesh_identity: CliRunner) -> None:
        result = await run(paymesh_identity, "set-client-tier", "nobody", "gold")
        assert result.exit_code == 1
        assert "no client 'nobody'" in result.output


class TestCreateClient:
    async def test_prints_the_rate_limit_tier(
        self,
        identity_platform: Platform,
        identity: httpx.AsyncClient,
        paymesh_identity: CliRunner,
    ) -> None:
        result = await run(
            paymesh_identity,
            "create-client",
            "--name",
            "Partner backend",
            "--confidential",
            "--grant",
            "client_credentials",
            "--client-id",
            "partner-backend",
            "--rate-limit-tier",
            "silver",
        )
        assert result.exit_code == 0, result.output
        assert "rate_limit_tier: silver" in result.stdout
        assert await shown_tier(identity_platform, identity, "partner-backend") == "silver"

    async def test_tier_defaults_to_bronze(
        self, identity_platform: Platform, paymesh_identity: CliRunner
    ) -> None:
        result = await run(
            paymesh_identity,
            "create-client",
            "--name",
            "Browser app",
            "--public",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://app.example.com/callback",
            "--json",
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rate_limit_tier"] == "bronze"


class TestChangesReachRunningServers:
    async def test_a_tier_set_here_reaches_the_servers_token_endpoint(
        self,
        identity_platform: Platform,
        identity: httpx.AsyncClient,
        paymesh_identity: CliRunner,
    ) -> None:
        """The command's process is not the server's: its change reaches the server's
        copy of the client (kept between grants) as a notice through identity's outbox."""
        client_id, secret = await f.create_service_client(identity_platform)

        async def tier_in_a_new_token() -> str:
            response = await identity.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
            )
            assert response.status_code == 200, response.text
            keys = identity_platform.runtimes["identity"].state["provider"].keys.key_set()
            return str(jwt.decode(response.json()["access_token"], keys).claims["tier"])

        await asyncio.sleep(2.1)  # past the registration's own notice: the copy is kept
        assert await tier_in_a_new_token() == "bronze"
        result = await run(paymesh_identity, "set-client-tier", client_id, "gold")
        assert result.exit_code == 0, result.output
        for _ in range(50):
            if await tier_in_a_new_token() == "gold":
                return
            await asyncio.sleep(0.2)
        pytest.fail("the server kept issuing the old tier")
