"""Fault injection for the crash tests: a process that kills itself at a named step, as if
the machine had lost power there (SIGKILL: no handler, no cleanup, no flush but the log
line written just before). The settings that name a step (`PAYMESH_PAYMENTS_CRASH_AT`,
`PAYMESH_RISK_CRASH_AT`) are refused unless PAYMESH_ENV=test."""

from __future__ import annotations

import os
import signal
from typing import Any

import structlog

log = structlog.get_logger("paymesh.faults")


def die_here(event: str, **fields: Any) -> None:
    """Log `event` with `fields`, then SIGKILL this process."""
    log.warning(event, **fields)
    os.kill(os.getpid(), signal.SIGKILL)
