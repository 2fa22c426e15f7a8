"""ledger: accounts, transfers, entries"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import BIGINT, JSON_TYPE, UTCDateTime

revision = "0002"
down_revision = "0001"


def _balances() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(name, sa.BigInteger(), nullable=False)
        for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    ]


def upgrade() -> None:
    op.create_table(
        "ledger_account",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("metadata", JSON_TYPE, nullable=False),
        *_balances(),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_account")),
        sa.CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 "
            "AND credits_pending >= 0 AND credits_posted >= 0",
            name=op.f("ck_ledger_account_balances_not_negative"),
        ),
    )
    op.create_index("ix_ledger_account_created_at_id", "ledger_account", ["created_at", "id"])
    op.create_table(
        "ledger_transfer",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("debit_account_id", sa.String(128), nullable=False),
        sa.Column("credit_account_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("posted_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("metadata", JSON_TYPE, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfer")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_transfer_amount_positive")),
        sa.ForeignKeyConstraint(
            ["debit_account_id"],
            ["ledger_account.id"],
            name=op.f("fk_ledger_transfer_debit_account_id_ledger_account"),
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id"],
            ["ledger_account.id"],
            name=op.f("fk_ledger_transfer_credit_account_id_ledger_account"),
        ),
    )
    op.create_index("ix_ledger_transfer_created_at_id", "ledger_transfer", ["created_at", "id"])
    op.create_index(
        "ix_ledger_transfer_pending_expiry",
        "ledger_transfer",
        ["expires_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "ledger_entry",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("transfer_id", sa.String(128), nullable=False),
        sa.Column("side", sa.String(6), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        *_balances(),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entry")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_account.id"],
            name=op.f("fk_ledger_entry_account_id_ledger_account"),
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["ledger_transfer.id"],
            name=op.f("fk_ledger_entry_transfer_id_ledger_transfer"),
        ),
    )
    op.create_index("ix_ledger_entry_account_id_id", "ledger_entry", ["account_id", "id"])


def downgrade() -> None:
    op.drop_table("ledger_entry")
    op.drop_table("ledger_transfer")
    op.drop_table("ledger_account")
