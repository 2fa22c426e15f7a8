"""sample service: kernel tables, notes and effects"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.migrations import create_kernel_tables, drop_kernel_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_kernel_tables()
    op.create_table(
        "note",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("text", sa.String(200), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
    )
    op.create_table(
        "effect",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("effect")
    op.drop_table("note")
    drop_kernel_tables()
