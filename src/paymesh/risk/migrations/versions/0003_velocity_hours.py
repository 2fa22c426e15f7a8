"""risk: hourly velocity totals (risk_velocity_hour), filled from risk_activity; an index on
risk_activity.transaction_id for payments' events"""

import datetime as dt
from collections import Counter

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import UTCDateTime

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    velocity = op.create_table(
        "risk_velocity_hour",
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("hour_start", UTCDateTime(), nullable=False),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("amount_usd", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "hour_start", name=op.f("pk_risk_velocity_hour")),
    )
    op.create_index("ix_risk_activity_transaction_id", "risk_activity", ["transaction_id"])
    activity = sa.table(
        "risk_activity",
        sa.column("customer_id", sa.String()),
        sa.column("amount_usd", sa.BigInteger()),
        sa.column("occurred_at", UTCDateTime()),
        sa.column("voided", sa.Boolean()),
    )
    # The totals of the rows already there, summed here (hour truncation differs between
    # the two databases' SQL; the table is small wherever this revision first runs).
    counts: Counter[tuple[str, dt.datetime]] = Counter()
    amounts: Counter[tuple[str, dt.datetime]] = Counter()
    rows = op.get_bind().execute(
        sa.select(activity.c.customer_id, activity.c.amount_usd, activity.c.occurred_at).where(
            activity.c.voided.is_(False)
        )
    )
    for customer_id, amount_usd, occurred_at in rows:
        key = (customer_id, occurred_at.replace(minute=0, second=0, microsecond=0))
        counts[key] += 1
        amounts[key] += amount_usd
    if counts:
        op.bulk_insert(
            velocity,
            [
                {
                    "customer_id": customer_id,
                    "hour_start": hour_start,
                    "transactions": counts[customer_id, hour_start],
                    "amount_usd": amounts[customer_id, hour_start],
                }
                for customer_id, hour_start in counts
            ],
        )


def downgrade() -> None:
    op.drop_index("ix_risk_activity_transaction_id", "risk_activity")
    op.drop_table("risk_velocity_hour")
