"""`paymesh audit ...`: `verify` checks the trail on the audit database directly, so an
auditor needs no server (exit code 0 when intact, 1 with the first bad record named)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from paymesh.audit.chain import Verification
from paymesh.audit.models import metadata
from paymesh.audit.schemas import VerificationOut
from paymesh.audit.trail import AuditTrail
from paymesh.kernel.config import Settings
from paymesh.kernel.db import Database
from paymesh.kernel.migrations import migrate

MIGRATIONS = Path(__file__).parent / "migrations"
commands = typer.Typer(help="Audit: verify the trail.", no_args_is_help=True)
_loader: list[Callable[[], Settings]] = []


def build(load_settings: Callable[[], Settings]) -> typer.Typer:
    """The `audit` command group, reading settings with `load_settings`."""
    _loader[:] = [load_settings]
    return commands


@commands.command("verify")
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recompute every hash, link and checkpoint of the audit trail."""

    async def main() -> Verification:
        database = Database.for_service(_loader[0]() if _loader else Settings(), "audit")
        try:
            await migrate(database, MIGRATIONS, metadata)
            return await AuditTrail().verify(database)
        finally:
            await database.dispose()

    result = asyncio.run(main())
    if as_json:
        typer.echo(VerificationOut.of(result).model_dump_json())
    elif result.ok:
        typer.echo(
            f"ok: {result.records} records in {result.chains} chains, "
            f"{result.checkpoints} checkpoints"
        )
    else:
        problem = result.first_problem
        assert problem is not None
        typer.echo(
            f"TAMPERED: {problem.kind} at chain {problem.chain} seq {problem.seq}: "
            f"{problem.detail}",
            err=True,
        )
    if not result.ok:
        raise typer.Exit(1)
