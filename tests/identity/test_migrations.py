"""The identity history builds exactly the tables `models.py` declares, and carries the
rows already there across each revision."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from paymesh.identity.commands import MIGRATIONS
from paymesh.identity.models import Client, metadata
from paymesh.kernel.db import JSON_TYPE, Database, UTCDateTime, utcnow
from paymesh.kernel.migrations import alembic_config
from paymesh.platform import Platform

# identity_client as revision 0002 left it (no rate_limit_tier), for rows written then.
clients_0002 = sa.table(
    "identity_client",
    *(sa.column(name, sa.String) for name in ("id", "name", "secret_hash", "status")),
    *(
        sa.column(name, JSON_TYPE)
        for name in (
            "redirect_uris",
            "post_logout_redirect_uris",
            "grant_types",
            "scopes",
            "roles",
            "audience",
        )
    ),
    sa.column("first_party", sa.Boolean),
    sa.column("password_grant_allowed", sa.Boolean),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)


async def alembic(database: Database, operation: str, revision: str) -> None:
    """`alembic upgrade|downgrade revision` on identity's history."""
    async with database.engine.begin() as connection:
        config = alembic_config("identity", MIGRATIONS, metadata)

        def run(sync: Any) -> None:
            config.attributes["connection"] = sync
            getattr(command, operation)(config, revision)

        await connection.run_sync(run)


def client_0002(client_id: str) -> dict[str, Any]:
    now = utcnow()
    lists = ("redirect_uris", "post_logout_redirect_uris", "scopes", "roles", "audience")
    return {
        "id": client_id,
        "name": client_id,
        "secret_hash": None,
        "status": "active",
        "grant_types": ["client_credentials"],
        **{key: [] for key in lists},
        "first_party": False,
        "password_grant_allowed": False,
        "created_at": now,
        "updated_at": now,
    }


class TestMigrations:
    async def test_schema_matches_the_models(self, make_platform: Callable[..., Any]) -> None:
        platform: Platform = await make_platform(["identity"], run_workers=False)
        database = platform.runtimes["identity"].database
        async with database.engine.connect() as connection:

            def differences(sync: Any) -> list[Any]:
                context = MigrationContext.configure(
                    sync, opts={"compare_type": True, "version_table": "alembic_version_identity"}
                )
                return list(compare_metadata(context, metadata))

            diff = await connection.run_sync(differences)
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        assert diff == []
        assert {"identity_user", "identity_client", "identity_signing_key", "outbox_event"} <= set(
            tables
        )


class TestClientRateLimitTierRevision:
    async def test_existing_clients_get_bronze_and_platform_services_unlimited(
        self, make_platform: Callable[..., Any]
    ) -> None:
        platform: Platform = await make_platform(["identity"], run_workers=False)
        database = platform.runtimes["identity"].database
        await alembic(database, "downgrade", "0002")
        ids = ("partner-app", "service-ledger", "service-Not.A.Service")
        async with database.transaction() as session:
            await session.execute(clients_0002.insert(), [client_0002(item) for item in ids])
        await alembic(database, "upgrade", "head")
        async with database.transaction() as session:
            rows = await session.execute(sa.text("SELECT id, rate_limit_tier FROM identity_client"))
            tiers = {client_id: tier for client_id, tier in rows}
        assert tiers == {
            "partner-app": "bronze",
            "service-ledger": "unlimited",
            "service-Not.A.Service": "bronze",
        }

    async def test_the_table_refuses_an_unknown_tier(
        self, make_platform: Callable[..., Any]
    ) -> None:
        platform: Platform = await make_platform(["identity"], run_workers=False)
        database = platform.runtimes["identity"].database
        row = client_0002("partner-app") | {"rate_limit_tier": "platinum"}
        with pytest.raises(IntegrityError, match="rate_limit_tier"):
            async with database.transaction() as session:
                await session.execute(sa.insert(Client), [row])
