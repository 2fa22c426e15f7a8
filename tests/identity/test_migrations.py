"""The identity history builds exactly the tables `models.py` declares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from paymesh.identity.models import metadata
from paymesh.platform import Platform


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
