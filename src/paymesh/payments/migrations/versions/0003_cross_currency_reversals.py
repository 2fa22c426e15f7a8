"""payments: reversals of cross-currency payments

A reversal row records what it took back from the payee in the destination currency and
the FX markup it gave back (both null for p2p); the payment accumulates both, so the
reversal that completes the payment takes exactly what is left. Existing payments start
at 0: no cross-currency payment could be reversed before this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("payment") as batch:
        batch.add_column(
            sa.Column(
                "reversed_destination_amount",
                sa.BigInteger(),
                server_default="0",
                nullable=False,
            )
        )
        batch.add_column(
            sa.Column("markup_refunded", sa.BigInteger(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("payment_reversal") as batch:
        batch.add_column(sa.Column("destination_amount", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("markup_refund", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_reversal") as batch:
        batch.drop_column("markup_refund")
        batch.drop_column("destination_amount")
    with op.batch_alter_table("payment") as batch:
        batch.drop_column("markup_refunded")
        batch.drop_column("reversed_destination_amount")
