"""Builds the identity service: an OAuth2 / OpenID Connect provider with users, roles,
clients and signing keys."""

from __future__ import annotations

from pathlib import Path

from paymesh.identity.accounts.api import router as accounts_router
from paymesh.identity.administration import api as administration
from paymesh.identity.api import oauth, router, well_known
from paymesh.identity.demo import demo_pages, seed_demo
from paymesh.identity.events import EVENTS
from paymesh.identity.fastpath import fast_paths
from paymesh.identity.jobs import periodic_jobs
from paymesh.identity.models import kernel_tables, metadata
from paymesh.identity.otp.api import router as one_time_codes_router
from paymesh.identity.otp.service import CodeHasher, HttpCodeDelivery, OneTimeCodes
from paymesh.identity.provider.state import ProviderState
from paymesh.identity.revocation import EVENT_TYPE as REVOCATION_EVENT
from paymesh.identity.revocation import TokenRevoker
from paymesh.identity.scim.app import router as scim_router
from paymesh.kernel.config import EdgeRoute
from paymesh.kernel.runtime import ConsumerSpec, ServiceRuntime, ServiceSpec


def _setup(runtime: ServiceRuntime) -> None:
    revoker = TokenRevoker(
        runtime.outbox, runtime.revocations, runtime.settings.identity.access_token_ttl_seconds
    )
    revoker.attach(runtime.database)
    runtime.state["revoker"] = revoker
    runtime.state["provider"] = ProviderState.build(runtime.settings, runtime.database, revoker)


async def _start(runtime: ServiceRuntime) -> None:
    state: ProviderState = runtime.state["provider"]
    await state.keys.ensure()
    revoker: TokenRevoker = runtime.state["revoker"]
    await revoker.restore(runtime.database)
    # Made at start: the in-process transport between services exists only by then.
    notifications = runtime.client("notifications")
    runtime.state["http_clients"] = (notifications,)
    runtime.state["one_time_codes"] = OneTimeCodes(
        runtime.database,
        runtime.outbox,
        runtime.settings.identity,
        CodeHasher(runtime.settings.signing_secret.get_secret_value()),
        HttpCodeDelivery(notifications),
    )


async def _stop(runtime: ServiceRuntime) -> None:
    state: ProviderState = runtime.state["provider"]
    state.signer.close()
    for client in runtime.state.pop("http_clients", ()):
        await client.aclose()


def _consumers(runtime: ServiceRuntime) -> list[ConsumerSpec]:
    revoker: TokenRevoker = runtime.state["revoker"]
    return [ConsumerSpec("token_revocations", (REVOCATION_EVENT,), revoker.on_event)]


SPEC = ServiceSpec(
    name="identity",
    title="Identity",
    description="OAuth2 / OpenID Connect provider: users, roles, clients, tokens, keys.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[
        well_known,
        oauth,
        router,
        accounts_router,
        one_time_codes_router,
        administration.clients,
        administration.users,
        scim_router,
        demo_pages,
    ],
    path_prefixes=("/v1/identity", "/oauth2", "/.well-known", "/scim2", "/demo"),
    edge_routes=(
        # The OAuth2 endpoints authenticate clients themselves (Basic, client secret,
        # PKCE) or take no credentials at all (discovery, JWKS, the login pages).
        EdgeRoute("/oauth2", policy="public"),
        EdgeRoute("/.well-known", policy="public"),
        EdgeRoute("/demo", policy="public"),
        EdgeRoute("/v1/identity/users", policy="public", methods=("POST",), exact=True),
        # Other services' step-up codes; ops and admins may read a code's state.
        EdgeRoute("/v1/identity/one-time-codes", roles=("service", "ops", "admin")),
        # The same requirement as scim/app.py's: the admin role, and for a user's token
        # used by an app, the identity:admin scope too.
        EdgeRoute("/scim2", roles=("admin",), scopes=("identity:admin",), refusals="scim"),
        # RFC 7644 4: what the SCIM service supports, readable without credentials.
        EdgeRoute("/scim2/ServiceProviderConfig", policy="public", refusals="scim"),
        EdgeRoute("/scim2/ResourceTypes", policy="public", refusals="scim"),
        EdgeRoute("/scim2/Schemas", policy="public", refusals="scim"),
    ),
    setup=_setup,
    on_start=_start,
    on_stop=_stop,
    periodic_jobs=periodic_jobs,
    consumers=_consumers,
    seed_demo=seed_demo,
    events=EVENTS,
    fast_paths=fast_paths,
)
