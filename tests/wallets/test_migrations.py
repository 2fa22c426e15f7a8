"""The wallets history builds exactly the tables `models.py` declares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from paymesh.platform import Platform
from paymesh.wallets.models import metadata


async def test_schema_matches_the_models(make_platform: Callable[..., Any]) -> None:
    platform: Platform = await make_platform(["wallets"], run_workers=False)
    database = platform.runtimes["wallets"].database
    async with database.engine.connect() as connection:

        def differences(sync: Any) -> list[Any]:
            context = MigrationContext.configure(
                sync, opts={"compare_type": True, "version_table": "alembic_version_wallets"}
            )
            return list(compare_metadata(context, metadata))

        diff = await connection.run_sync(differences)
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert diff == []
    assert {"wallets_wallet", "wallets_hold", "wallets_operation", "outbox_event"} <= set(names)
