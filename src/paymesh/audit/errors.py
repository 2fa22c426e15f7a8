"""Audit errors, named after the condition."""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class AuditError(PaymeshError):
    """Root of the audit service's errors."""


class RecordNotFound(AuditError):
    code = "audit_record_not_found"
    status = 404
    title = "No such audit record"


class InvalidTimeRange(AuditError):
    code = "invalid_time_range"
    status = 422
    title = "`from` must not be after `to`"
