from __future__ import annotations

import httpx

from paymesh.platform import Platform
from tests.identity import factories as f


class TestCodeFlow:
    async def test_code_pkce_refresh(
        self, identity_platform: Platform, identity: httpx.AsyncClient
    ) -> None:
        await f.create_user(identity_platform)
        app = await f.create_client(identity_platform)
        pkce = f.Pkce.make()
        code = await f.authorization_code(identity, app.client_id, pkce)
        response = await f.exchange_code(identity, app.client_id, code, pkce.verifier)
        assert response.status_code == 200, response.text
        body = response.json()
        assert {"access_token", "id_token", "refresh_token"} <= set(body)
        refreshed = await identity.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "client_id": app.client_id,
            },
        )
        assert refreshed.status_code == 200, refreshed.text
