"""Builds the ledger service."""

from __future__ import annotations

from pathlib import Path

from paymesh.kernel.runtime import ServiceSpec
from paymesh.ledger.models import kernel_tables, metadata

SPEC = ServiceSpec(
    name="ledger",
    title="Ledger",
    description="Double-entry accounts and transfers, two-phase, exact to the minor unit.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[],
)
