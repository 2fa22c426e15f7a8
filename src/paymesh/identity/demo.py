"""Demo data for `make run` (never in production): an admin, customers alice and bob, and
the clients the README's identity tour uses. Seeding twice changes nothing."""

from __future__ import annotations

from paymesh.identity import repository, service
from paymesh.identity.schemas import ClientCreate, UserCreate
from paymesh.kernel.runtime import ServiceRuntime

DEMO_PASSWORD = "paymesh-demo-password"  # noqa: S105 - documented demo credential

USERS = [
    UserCreate(
        username="admin",
        password=DEMO_PASSWORD,
        email="admin@paymesh.example",
        given_name="Ada",
        family_name="Admin",
        roles=["admin"],
    ),
    UserCreate(
        username="alice",
        password=DEMO_PASSWORD,
        email="alice@paymesh.example",
        given_name="Alice",
        family_name="Liddell",
        phone="+15555550101",
        roles=["customer"],
    ),
    UserCreate(
        username="bob",
        password=DEMO_PASSWORD,
        email="bob@paymesh.example",
        given_name="Bob",
        family_name="Builder",
        roles=["customer"],
    ),
]

WEB_APP = ClientCreate(
    client_id="demo-web",
    name="Paymesh demo web app",
    public=True,
    first_party=True,
    redirect_uris=["http://127.0.0.1:8000/demo/callback", "http://localhost:3000/callback"],
    post_logout_redirect_uris=["http://localhost:3000/"],
    grant_types=["authorization_code", "refresh_token"],
    scopes=["openid", "profile", "email", "phone", "offline_access"],
)
LEGACY_APP = ClientCreate(
    client_id="demo-legacy",
    name="Paymesh legacy mobile app",
    public=False,
    first_party=True,
    grant_types=["password", "refresh_token"],
    password_grant_allowed=True,
    scopes=["openid", "profile", "email"],
)
REPORTING = ClientCreate(
    client_id="demo-reporting",
    name="Reporting job (service account)",
    public=False,
    grant_types=["client_credentials"],
    scopes=["ledger:read"],
    roles=["auditor"],
)

DEMO_CLIENT_SECRETS = {
    "demo-legacy": "demo-legacy-secret",
    "demo-reporting": "demo-reporting-secret",
}
"""Fixed demo secrets, so the README can show copy-paste requests."""


async def seed_demo(runtime: ServiceRuntime) -> None:
    async with runtime.database.transaction() as session:
        for user in USERS:
            if await repository.get_user_by_username(session, user.username) is None:
                await service.create_user(session, user)
        for client in (WEB_APP, LEGACY_APP, REPORTING):
            assert client.client_id is not None
            if await repository.get_client(session, client.client_id) is None:
                secret = DEMO_CLIENT_SECRETS.get(client.client_id)
                await service.create_client(session, client, secret=secret)
