"""Alembic, one migration history per service, each with its own version table.

A service's `migrations/env.py` is two lines that call `run_env()`. `migrate()` applies a
service's history inside a transaction on its own engine (schema created first on
PostgreSQL, under an advisory lock so replicas starting together do not race).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from paymesh.kernel.db import Database, service_metadata
from paymesh.kernel.tables import KernelTables

if TYPE_CHECKING:
    from sqlalchemy import MetaData


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def alembic_config(service: str, directory: Path, metadata: MetaData) -> Config:
    config = Config()
    config.set_main_option("script_location", str(directory))
    config.attributes["service"] = service
    config.attributes["metadata"] = metadata
    return config


def run_env() -> None:
    """Body of every service's `migrations/env.py` (online mode, shared connection)."""
    config = context.config
    connection: Connection | None = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `paymesh migrate`, which supplies a connection")
    context.configure(
        connection=connection,
        target_metadata=config.attributes["metadata"],
        version_table=version_table(config.attributes["service"]),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def create_kernel_tables() -> None:
    """Create the outbox, inbox, dead letters, idempotency records, tasks and job leases."""
    bind = op.get_bind()
    for table in KernelTables(service_metadata()).all:
        table.create(bind)


def drop_kernel_tables() -> None:
    bind = op.get_bind()
    for table in reversed(KernelTables(service_metadata()).all):
        table.drop(bind)


async def migrate(database: Database, directory: Path, metadata: MetaData) -> None:
    service = database.service
    async with database.engine.begin() as connection:
        if database.is_postgres:
            lock = zlib.crc32(f"paymesh-migrate-{service}".encode())
            await connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock})
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{service}"'))
        config = alembic_config(service, directory, metadata)

        def upgrade(sync_connection: Connection) -> None:
            config.attributes["connection"] = sync_connection
            command.upgrade(config, "head")

        await connection.run_sync(upgrade)
