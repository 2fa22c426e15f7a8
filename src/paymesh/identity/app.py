"""Builds the identity service: an OAuth2 / OpenID Connect provider with users, roles,
clients and signing keys."""

from __future__ import annotations

from pathlib import Path

from paymesh.identity.models import kernel_tables, metadata
from paymesh.kernel.runtime import ServiceSpec

SPEC = ServiceSpec(
    name="identity",
    title="Identity",
    description="OAuth2 / OpenID Connect provider: users, roles, clients, tokens, keys.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[],
    path_prefixes=("/v1/identity", "/oauth2", "/.well-known", "/scim2"),
)
