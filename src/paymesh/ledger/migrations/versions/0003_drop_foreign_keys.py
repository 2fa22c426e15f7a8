"""ledger: drop foreign keys on the hot insert path

PostgreSQL checks each foreign key with a per-row trigger query; on transfers and entries
that was a quarter of the database's work per transfer. The batch writer already locks and
verifies both accounts before it writes a transfer, and writes a transfer and its entries
in one statement; tests check that every entry's transfer and account exist.
"""

from alembic import op

revision = "0003"
down_revision = "0002"

FOREIGN_KEYS = (
    (
        "ledger_entry",
        "fk_ledger_entry_transfer_id_ledger_transfer",
        "transfer_id",
        "ledger_transfer",
    ),
    ("ledger_entry", "fk_ledger_entry_account_id_ledger_account", "account_id", "ledger_account"),
    (
        "ledger_transfer",
        "fk_ledger_transfer_debit_account_id_ledger_account",
        "debit_account_id",
        "ledger_account",
    ),
    (
        "ledger_transfer",
        "fk_ledger_transfer_credit_account_id_ledger_account",
        "credit_account_id",
        "ledger_account",
    ),
)


def upgrade() -> None:
    for table, name, _column, _referred in FOREIGN_KEYS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table, name, column, referred in FOREIGN_KEYS:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(name, referred, [column], ["id"])
