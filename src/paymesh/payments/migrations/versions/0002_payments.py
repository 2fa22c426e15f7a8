"""payments: payments, their timeline, reversals"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "payment",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("request_key", sa.String(400), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("payer_id", sa.String(40), nullable=False),
        sa.Column("source_wallet_id", sa.String(64), nullable=False),
        sa.Column("source_account_id", sa.String(128), nullable=False),
        sa.Column("payee_id", sa.String(40), nullable=False),
        sa.Column("destination_wallet_id", sa.String(64), nullable=False),
        sa.Column("destination_account_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("destination_amount", sa.BigInteger(), nullable=False),
        sa.Column("destination_currency", sa.String(3), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("fee_rule", sa.JSON(), nullable=False),
        sa.Column("quote", sa.JSON(), nullable=True),
        sa.Column("risk", sa.JSON(), nullable=True),
        sa.Column("otp_id", sa.String(40), nullable=True),
        sa.Column("otp_expires_at", UTCDateTime(), nullable=True),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("failure_reason", sa.String(500), nullable=True),
        sa.Column("reversed_amount", sa.BigInteger(), nullable=False),
        sa.Column("fee_refunded", sa.BigInteger(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment")),
        sa.UniqueConstraint("request_key", name=op.f("uq_payment_request_key")),
    )
    op.create_index("ix_payment_status_updated_at", "payment", ["status", "updated_at"])
    op.create_index("ix_payment_payer_id_created_at", "payment", ["payer_id", "created_at"])
    op.create_index("ix_payment_created_at", "payment", ["created_at", "id"])
    op.create_table(
        "payment_step",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("step", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_step")),
    )
    op.create_index("ix_payment_step_payment_id", "payment_step", ["payment_id", "id"])
    op.create_table(
        "payment_reversal",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee_refund", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_reversal")),
    )
    op.create_index("ix_payment_reversal_payment_id", "payment_reversal", ["payment_id"])
    op.create_index(
        "ix_payment_reversal_status_created_at", "payment_reversal", ["status", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("payment_reversal")
    op.drop_table("payment_step")
    op.drop_table("payment")
