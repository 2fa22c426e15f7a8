"""Each history builds exactly the tables its `models.py` declares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from paymesh.platform import Platform
from paymesh.profiles.models import metadata as profiles_metadata
from paymesh.providers.models import metadata as providers_metadata


@pytest.mark.parametrize(
    ("service", "metadata", "tables"),
    [
        ("profiles", profiles_metadata, {"profiles_profile", "profiles_kyc_submission"}),
        ("providers", providers_metadata, {"providers_kyc_check", "providers_callback_receipt"}),
    ],
)
async def test_schema_matches_the_models(
    make_platform: Callable[..., Any], service: str, metadata: Any, tables: set[str]
) -> None:
    platform: Platform = await make_platform([service], run_workers=False)
    database = platform.runtimes[service].database
    async with database.engine.connect() as connection:

        def differences(sync: Any) -> list[Any]:
            context = MigrationContext.configure(
                sync, opts={"compare_type": True, "version_table": f"alembic_version_{service}"}
            )
            return list(compare_metadata(context, metadata))

        diff = await connection.run_sync(differences)
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert diff == []
    assert tables | {"outbox_event", "inbox_event"} <= set(names)
