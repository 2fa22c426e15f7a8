"""payments: payouts to other banks

A payout keeps its validated beneficiary, bank, purpose, remittance information, the
instruction sent and the bank's outcome (`payout`, JSON), and the outcome's status apart
(`bank_outcome`, with the ISO reason in `bank_reason`) so the recovery job finds payouts whose outcome is recorded but not yet
acted on. Both null for p2p and cross-currency payments.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("payment") as batch:
        batch.add_column(sa.Column("payout", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("bank_outcome", sa.String(length=12), nullable=True))
        batch.add_column(sa.Column("bank_reason", sa.String(length=300), nullable=True))
        batch.create_index("ix_payment_bank_outcome_status", ["bank_outcome", "status"])


def downgrade() -> None:
    with op.batch_alter_table("payment") as batch:
        batch.drop_index("ix_payment_bank_outcome_status")
        batch.drop_column("bank_reason")
        batch.drop_column("bank_outcome")
        batch.drop_column("payout")
