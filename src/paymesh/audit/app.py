"""Builds the audit service: a tamper-evident, masked trail of every event."""

from __future__ import annotations

from pathlib import Path

from paymesh.audit.api import router
from paymesh.audit.consumers import consumers
from paymesh.audit.jobs import periodic_jobs
from paymesh.audit.models import kernel_tables, metadata
from paymesh.audit.trail import AuditTrail
from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec


def _setup(runtime: ServiceRuntime) -> None:
    runtime.state["trail"] = AuditTrail()


SPEC = ServiceSpec(
    name="audit",
    title="Audit",
    description="Every service's events, masked and hash-chained: search, export, verify.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    setup=_setup,
    consumers=consumers,
    periodic_jobs=periodic_jobs,
)
