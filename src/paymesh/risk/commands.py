"""`paymesh risk ...`: operator commands that work on the risk database directly
(migrating it first), so no server needs to run. Running processes pick a new list up
within `PAYMESH_RISK_LIST_REFRESH_SECONDS`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from paymesh.kernel.config import Settings
from paymesh.kernel.db import Database
from paymesh.kernel.migrations import migrate
from paymesh.risk.models import metadata
from paymesh.risk.sanctions import ListFormat, all_versions, parse_list, store_list
from paymesh.risk.schemas import ListVersionOut
from paymesh.risk.screening import ListFormatError

MIGRATIONS = Path(__file__).parent / "migrations"
MAX_LIST_BYTES = 256 * 1024 * 1024

commands = typer.Typer(help="Risk: sanctions lists.", no_args_is_help=True)
_loader: list[Callable[[], Settings]] = []


def build(load_settings: Callable[[], Settings]) -> typer.Typer:
    """The `risk` command group, reading settings with `load_settings`."""
    _loader[:] = [load_settings]
    return commands


def _settings() -> Settings:
    return _loader[0]() if _loader else Settings()


def _read(paths: list[Path]) -> list[bytes]:
    contents = []
    for path in paths:
        if not path.is_file():
            typer.echo(f"error: {path} is not a file", err=True)
            raise typer.Exit(2)
        if path.stat().st_size > MAX_LIST_BYTES:
            typer.echo(f"error: {path} is larger than {MAX_LIST_BYTES} bytes", err=True)
            raise typer.Exit(2)
        contents.append(path.read_bytes())
    return contents


@commands.command("load-list")
def load_list(
    paths: Annotated[
        list[Path], typer.Argument(help="UN: the XML file. OFAC: sdn.csv [alt.csv [add.csv]].")
    ],
    list_format: Annotated[ListFormat, typer.Option("--format", help="un-xml or ofac-csv.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Load a sanctions list file as the newest version of its list (atomically: screening
    switches from the old list to the whole new one)."""
    contents = _read(paths)
    try:
        sanctions = parse_list(list_format, contents)
    except (ListFormatError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None

    async def main() -> ListVersionOut:
        database = Database.for_service(_settings(), "risk")
        try:
            await migrate(database, MIGRATIONS, metadata)
            async with database.transaction() as session:
                version = await store_list(session, sanctions, list_format, contents, "cli")
                return ListVersionOut.model_validate(version, from_attributes=True)
        finally:
            await database.dispose()

    loaded = asyncio.run(main())
    if as_json:
        typer.echo(loaded.model_dump_json())
    else:
        typer.echo(
            f"loaded {loaded.list_name} published {loaded.published}: "
            f"{loaded.entry_count} entries (version {loaded.id})"
        )


@commands.command("lists")
def lists(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The loaded list versions, newest first."""

    async def main() -> list[ListVersionOut]:
        database = Database.for_service(_settings(), "risk")
        try:
            await migrate(database, MIGRATIONS, metadata)
            async with database.transaction(read_only=True) as session:
                rows = await all_versions(session)
                return [ListVersionOut.model_validate(r, from_attributes=True) for r in rows]
        finally:
            await database.dispose()

    found = asyncio.run(main())
    if as_json:
        typer.echo(json.dumps([version.model_dump(mode="json") for version in found]))
        return
    for version in found:
        typer.echo(
            f"{version.id}\t{version.list_name}\t{version.published}\t"
            f"{version.entry_count} entries\tloaded {version.loaded_at.isoformat()}"
        )
