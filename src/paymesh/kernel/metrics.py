"""The platform's own Prometheus metrics, beyond HTTP (kernel/observability.py): money,
events, security and health, in one place so the dashboards and alert rules in
`deploy/observability/` name only what exists (tests/test_observability.py checks that).

Names and units follow Prometheus's conventions (`_total` counters, `_seconds`); labels are
low-cardinality only: a result code, a type, a status, a service, a consumer, a channel, a
tier — never a user, wallet or payment id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# --- ledger ---------------------------------------------------------------------------------

LEDGER_TRANSFERS = Counter(
    "paymesh_ledger_transfers_total",
    "Ledger operations (create, post, void) by result: ok, replayed, or the refusal's code",
    ["result"],
)
LEDGER_GROUP_COMMIT = Histogram(
    "paymesh_ledger_group_commit_operations",
    "Operations committed together in one ledger transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
GROUP_COMMIT_SIZE = Histogram(
    "paymesh_group_commit_works",
    "Units of work committed together in one transaction (kernel/groupcommit.py)",
    ["group"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
LEDGER_QUEUED = Gauge(
    "paymesh_ledger_engine_queued_operations",
    "Ledger operations waiting for a writer (refused with 503 past the limit)",
    multiprocess_mode="livesum",
)
LEDGER_QUEUE_LIMIT = Gauge(
    "paymesh_ledger_engine_queue_limit_operations",
    "Queued ledger operations beyond which requests are refused with 503",
    multiprocess_mode="max",
)
LEDGER_UNBALANCED = Gauge(
    "paymesh_ledger_unbalanced_currencies",
    "Currencies whose debits and credits differed at the last trial-balance check (0: "
    "balanced, and the value before the first check)",
    multiprocess_mode="max",
)

# --- events ---------------------------------------------------------------------------------

OUTBOX_BACKLOG = Gauge(
    "paymesh_outbox_backlog_events",
    "Events written to a service's outbox and not yet published",
    ["service"],
    multiprocess_mode="max",
)
OUTBOX_OLDEST = Gauge(
    "paymesh_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest event not yet published from a service's outbox (0 when none)",
    ["service"],
    multiprocess_mode="max",
)
OUTBOX_PUBLISHED = Counter(
    "paymesh_outbox_published_events_total",
    "Events the outbox relay handed to the bus",
    ["service"],
)
CONSUMER_ATTEMPTS = Counter(
    "paymesh_consumer_attempts_total",
    "Deliveries of an event to a consumer's handler",
    ["consumer"],
)
CONSUMER_FAILURES = Counter(
    "paymesh_consumer_failures_total", "Deliveries whose handler raised", ["consumer"]
)
CONSUMER_DEAD_LETTERS = Counter(
    "paymesh_consumer_dead_letters_total",
    "Events a consumer gave up on after its attempts (replayable by operators)",
    ["consumer"],
)

# --- payments and risk ------------------------------------------------------------------------

PAYMENTS = Counter(
    "paymesh_payments_total", "Payments reaching a status, by type and status", ["type", "status"]
)
PAYMENT_DURATION = Histogram(
    "paymesh_payment_duration_seconds",
    "From a payment's creation to its final status",
    ["type", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
RISK_DECISIONS = Counter(
    "paymesh_risk_decisions_total", "Risk evaluations by level and decision", ["level", "decision"]
)
RISK_EVALUATION = Histogram(
    "paymesh_risk_evaluation_duration_seconds",
    "Time to gather the facts and evaluate the rules for one transaction",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
FOREX_REFRESHED = Gauge(
    "paymesh_forex_rates_refreshed_timestamp_seconds",
    "When forex last stored fresh rates (Unix time)",
    multiprocess_mode="max",
)

# --- gateway ------------------------------------------------------------------------------------

RATE_LIMITED = Counter(
    "paymesh_gateway_rate_limited_total", "Requests refused with 429, by tier", ["tier"]
)
BREAKER_OPEN = Gauge(
    "paymesh_gateway_breaker_open",
    "1 while the gateway's breaker for an upstream service is open, else 0",
    ["upstream"],
    multiprocess_mode="max",
)

# --- identity ------------------------------------------------------------------------------

LOGIN_FAILURES = Counter(
    "paymesh_identity_login_failures_total", "Failed password logins (wrong user or password)"
)
LOCKOUTS = Counter(
    "paymesh_identity_lockouts_total",
    "Login lockouts begun, by what was locked: a username or a client address",
    ["kind"],
)

# --- notifications and audit ----------------------------------------------------------------------

NOTIFICATION_DELIVERIES = Counter(
    "paymesh_notification_deliveries_total",
    "Notification delivery outcomes by channel and status",
    ["channel", "status"],
)
AUDIT_APPEND_LAG = Histogram(
    "paymesh_audit_append_lag_seconds",
    "From an event's time to its record in the audit trail",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
