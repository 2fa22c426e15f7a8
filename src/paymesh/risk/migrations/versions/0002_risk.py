"""risk: rule sets and activations, decisions, velocity, cases, sanctions lists"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "risk_ruleset",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_risk_ruleset")),
    )
    op.create_table(
        "risk_ruleset_activation",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("activated_at", UTCDateTime(), nullable=False),
        sa.Column("activated_by", sa.String(255), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_ruleset_activation")),
    )
    op.create_table(
        "risk_decision",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("screening", sa.JSON(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("ruleset_version", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_decision")),
        sa.CheckConstraint(
            "decision IN ('allow', 'step_up', 'review', 'block')",
            name=op.f("ck_risk_decision_known"),
        ),
        sa.CheckConstraint(
            "level IN ('low', 'medium', 'high')", name=op.f("ck_risk_decision_level_known")
        ),
    )
    op.create_index("ix_risk_decision_transaction_id", "risk_decision", ["transaction_id"])
    op.create_index("ix_risk_decision_created_at", "risk_decision", ["created_at", "id"])
    op.create_table(
        "risk_activity",
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("amount_usd", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("voided", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "transaction_id", name=op.f("pk_risk_activity")),
        sa.CheckConstraint("amount_usd >= 0", name=op.f("ck_risk_activity_amount_not_negative")),
    )
    op.create_index(
        "ix_risk_activity_customer_occurred", "risk_activity", ["customer_id", "occurred_at"]
    )
    op.create_table(
        "risk_case",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("decision_id", sa.String(40), nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(255), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_case")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_risk_case_decision_id")),
        sa.CheckConstraint(
            "status IN ('open', 'approved', 'declined')", name=op.f("ck_risk_case_status_known")
        ),
    )
    op.create_index("ix_risk_case_status_created", "risk_case", ["status", "created_at", "id"])
    op.create_table(
        "risk_sanctions_list",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("list_name", sa.String(32), nullable=False),
        sa.Column("published", sa.String(64), nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("loaded_at", UTCDateTime(), nullable=False),
        sa.Column("loaded_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_sanctions_list")),
    )
    op.create_index("ix_risk_sanctions_list_name", "risk_sanctions_list", ["list_name", "id"])
    op.create_table(
        "risk_sanctions_entry",
        sa.Column("list_version_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("entry", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint(
            "list_version_id", "entry_id", name=op.f("pk_risk_sanctions_entry")
        ),
    )


def downgrade() -> None:
    for table in (
        "risk_sanctions_entry",
        "risk_sanctions_list",
        "risk_case",
        "risk_activity",
        "risk_decision",
        "risk_ruleset_activation",
        "risk_ruleset",
    ):
        op.drop_table(table)
