"""identity: out-of-band one-time codes (SMS / email), kept as keyed HMACs only"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import UTCDateTime

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "identity_one_time_code",
        sa.Column("id", sa.String(length=40), nullable=False, comment="otp_<ulid>"),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column(
            "purpose", sa.String(length=64), nullable=False, comment="e.g. payment:pay_<ulid>"
        ),
        sa.Column(
            "channel",
            sa.String(length=8),
            nullable=True,
            comment="sms | email; null: notifications chooses",
        ),
        sa.Column(
            "code_hash",
            sa.String(length=64),
            nullable=False,
            comment="HMAC-SHA256 hex over id and code, keyed from the signing secret",
        ),
        sa.Column("attempts_left", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("voided_at", UTCDateTime(), nullable=True),
        sa.Column(
            "void_reason",
            sa.String(length=16),
            nullable=True,
            comment="replaced | delivery_failed",
        ),
        sa.CheckConstraint(
            "attempts_left >= 0",
            name=op.f("ck_identity_one_time_code_attempts_left_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_user.id"],
            name=op.f("fk_identity_one_time_code_user_id_identity_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_one_time_code")),
    )
    op.create_index(
        "ix_identity_one_time_code_user_id_created_at",
        "identity_one_time_code",
        ["user_id", "created_at"],
    )
    op.create_index(
        "ix_identity_one_time_code_user_id_purpose",
        "identity_one_time_code",
        ["user_id", "purpose"],
    )


def downgrade() -> None:
    op.drop_index("ix_identity_one_time_code_user_id_purpose", table_name="identity_one_time_code")
    op.drop_index(
        "ix_identity_one_time_code_user_id_created_at", table_name="identity_one_time_code"
    )
    op.drop_table("identity_one_time_code")
