"""providers: payout instructions sent to partner banks and their statuses"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import UTCDateTime

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "providers_payout_instruction",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.String(128), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False, comment="the calling client"),
        sa.Column("request_sha256", sa.String(64), nullable=False, comment="digest of the request"),
        sa.Column("bank", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(35), nullable=False, comment="pacs.008 MsgId"),
        sa.Column("end_to_end_id", sa.String(35), nullable=False, comment="pacs.008 EndToEndId"),
        sa.Column(
            "amount", sa.BigInteger(), nullable=False, comment="minor units the beneficiary gets"
        ),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column(
            "status",
            sa.String(16),
            nullable=False,
            comment="submitting | submitted | settled | rejected | timed_out",
        ),
        sa.Column(
            "bank_status", sa.String(8), nullable=True, comment="the last ISO status the bank gave"
        ),
        sa.Column("reason_code", sa.String(8), nullable=True),
        sa.Column("reason_text", sa.String(256), nullable=True),
        sa.Column("message", sa.Text(), nullable=False, comment="the pacs.008 sent (UTF-8 XML)"),
        sa.Column("poll_attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_poll_at",
            UTCDateTime(),
            nullable=True,
            comment="when the job next asks the bank (or resends)",
        ),
        sa.Column(
            "deadline_at", UTCDateTime(), nullable=False, comment="unanswered by then: timed_out"
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("submitted_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers_payout_instruction")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_providers_payout_instruction_payment_id")),
        sa.UniqueConstraint(
            "bank",
            "end_to_end_id",
            name=op.f("uq_providers_payout_instruction_bank_end_to_end_id"),
        ),
    )
    op.create_index(
        "ix_providers_payout_instruction_due",
        "providers_payout_instruction",
        ["status", "next_poll_at"],
    )
    op.create_table(
        "providers_payout_status",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("instruction_id", sa.String(64), nullable=False),
        sa.Column("bank_status", sa.String(8), nullable=False, comment="ISO 20022 status code"),
        sa.Column("reason_code", sa.String(8), nullable=True),
        sa.Column("reason_text", sa.String(256), nullable=True),
        sa.Column("source", sa.String(16), nullable=False, comment="answer | callback | poll"),
        sa.Column("bank_message_id", sa.String(35), nullable=False, comment="the pacs.002 MsgId"),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers_payout_status")),
    )
    op.create_index(
        "ix_providers_payout_status_instruction",
        "providers_payout_status",
        ["instruction_id", "recorded_at"],
    )


def downgrade() -> None:
    op.drop_table("providers_payout_status")
    op.drop_table("providers_payout_instruction")
