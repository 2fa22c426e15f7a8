"""wallets: wallets, holds, operations"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "wallets_wallet",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ledger_account_id", sa.String(128), nullable=False),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets_wallet")),
        sa.UniqueConstraint("request_key", name=op.f("uq_wallets_wallet_request_key")),
    )
    op.create_index(
        "uq_wallets_wallet_owner_currency",
        "wallets_wallet",
        ["owner_id", "currency"],
        unique=True,
        postgresql_where=sa.text("status <> 'closed'"),
        sqlite_where=sa.text("status <> 'closed'"),
    )
    op.create_index(
        "ix_wallets_wallet_owner_created", "wallets_wallet", ["owner_id", "created_at", "id"]
    )
    op.create_index("ix_wallets_wallet_status_updated", "wallets_wallet", ["status", "updated_at"])
    op.create_table(
        "wallets_hold",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("wallet_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("captured_amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("transfer_id", sa.String(128), nullable=False),
        sa.Column("expires_in_seconds", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets_hold")),
    )
    op.create_index("ix_wallets_hold_wallet_id", "wallets_hold", ["wallet_id"])
    op.create_index("ix_wallets_hold_status_expires_at", "wallets_hold", ["status", "expires_at"])
    op.create_table(
        "wallets_operation",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("wallet_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reference", sa.String(255), nullable=True),
        sa.Column("hold_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets_operation")),
        sa.UniqueConstraint("request_key", name=op.f("uq_wallets_operation_request_key")),
    )
    op.create_index(
        "ix_wallets_operation_status_created_at", "wallets_operation", ["status", "created_at"]
    )
    op.create_index(
        "ix_wallets_operation_wallet_id_created_at",
        "wallets_operation",
        ["wallet_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("wallets_operation")
    op.drop_table("wallets_hold")
    op.drop_table("wallets_wallet")
