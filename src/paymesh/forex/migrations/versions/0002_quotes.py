"""forex: quotes"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "forex_quote",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=True),
        sa.Column("from_currency", sa.String(3), nullable=False),
        sa.Column("to_currency", sa.String(3), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("from_amount", sa.BigInteger(), nullable=False),
        sa.Column("to_amount", sa.BigInteger(), nullable=False),
        sa.Column("mid_rate", sa.String(48), nullable=False),
        sa.Column("customer_rate", sa.String(48), nullable=False),
        sa.Column("markup_bps", sa.Integer(), nullable=False),
        sa.Column("rate_date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("consumed_at", UTCDateTime(), nullable=True),
        sa.Column("consumed_by", sa.String(255), nullable=True),
        sa.Column("consumed_reference", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forex_quote")),
        sa.CheckConstraint(
            "from_amount > 0 AND to_amount > 0", name=op.f("ck_forex_quote_amounts_positive")
        ),
        sa.CheckConstraint("side IN ('sell', 'buy')", name=op.f("ck_forex_quote_side_known")),
    )
    op.create_index("ix_forex_quote_owner_created_at", "forex_quote", ["owner", "created_at"])


def downgrade() -> None:
    op.drop_table("forex_quote")
