"""payments: kernel tables"""

from paymesh.kernel.migrations import create_kernel_tables, drop_kernel_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_kernel_tables()


def downgrade() -> None:
    drop_kernel_tables()
