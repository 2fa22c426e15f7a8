"""audit: records and checkpoints"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "audit_record",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("chain", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("resource", sa.String(255), nullable=True),
        sa.Column("actor_subject", sa.String(255), nullable=True),
        sa.Column("actor", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_record")),
        sa.UniqueConstraint("chain", "seq", name=op.f("uq_audit_record_chain_seq")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_record_event_id")),
    )
    op.create_index("ix_audit_record_occurred_at", "audit_record", ["occurred_at", "id"])
    op.create_index("ix_audit_record_type_occurred_at", "audit_record", ["type", "occurred_at"])
    op.create_index(
        "ix_audit_record_actor_subject_occurred_at",
        "audit_record",
        ["actor_subject", "occurred_at"],
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("heads", sa.JSON(), nullable=False),
        sa.Column("pruned", sa.JSON(), nullable=False),
        sa.Column("sealed_at", UTCDateTime(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoint")),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoint")
    op.drop_table("audit_record")
