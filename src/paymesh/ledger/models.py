"""Ledger tables (placeholder until the ledger lands)."""

from __future__ import annotations

from paymesh.kernel.db import service_metadata
from paymesh.kernel.tables import KernelTables

metadata = service_metadata()
kernel_tables = KernelTables(metadata)
