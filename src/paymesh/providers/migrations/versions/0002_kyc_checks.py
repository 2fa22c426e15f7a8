"""providers: KYC checks and accepted vendor callbacks"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import JSON_TYPE, UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "providers_kyc_check",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False, comment="the calling client"),
        sa.Column("reference", sa.String(128), nullable=False, comment="the requester's own id"),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("vendor_check_id", sa.String(128), nullable=True),
        sa.Column("document_type", sa.String(32), nullable=False),
        sa.Column(
            "status",
            sa.String(16),
            nullable=False,
            comment="pending | verified | rejected | needs_review",
        ),
        sa.Column("reasons", JSON_TYPE, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers_kyc_check")),
        sa.UniqueConstraint(
            "requested_by",
            "reference",
            name=op.f("uq_providers_kyc_check_requested_by_reference"),
        ),
    )
    op.create_index(
        "ix_providers_kyc_check_vendor_check_id",
        "providers_kyc_check",
        ["vendor", "vendor_check_id"],
        unique=True,
    )
    op.create_table(
        "providers_callback_receipt",
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("signature_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("vendor", "event_id", name=op.f("pk_providers_callback_receipt")),
        sa.UniqueConstraint(
            "signature_sha256", name=op.f("uq_providers_callback_receipt_signature_sha256")
        ),
    )
    op.create_index(
        "ix_providers_callback_receipt_received_at", "providers_callback_receipt", ["received_at"]
    )


def downgrade() -> None:
    op.drop_table("providers_callback_receipt")
    op.drop_table("providers_kyc_check")
