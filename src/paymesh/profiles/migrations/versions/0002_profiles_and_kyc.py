"""profiles: profiles and KYC submissions"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import JSON_TYPE, UTCDateTime

revision = "0002"
down_revision = "0001"

KYC_STATUSES = "'none', 'pending', 'verified', 'rejected', 'needs_review'"


def _text(name: str, length: int, nullable: bool = True, comment: str | None = None) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_table(
        "profiles_profile",
        _text("user_id", 64, nullable=False),
        _text("given_name", 100),
        _text("family_name", 100),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        _text("address_line1", 200),
        _text("address_line2", 200),
        _text("city", 100),
        _text("region", 100),
        _text("postal_code", 20),
        _text("country", 2),
        _text("phone", 16),
        _text("email", 320, comment="copied from identity, which owns it"),
        _text("kyc_status", 16, nullable=False),
        _text("kyc_level", 8, nullable=False),
        sa.Column("kyc_reasons", JSON_TYPE, nullable=False),
        _text("kyc_submission_id", 64, comment="the latest submission"),
        sa.Column("identity_synced_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_profiles_profile")),
        sa.CheckConstraint(
            f"kyc_status IN ({KYC_STATUSES})", name=op.f("ck_profiles_profile_kyc_status_known")
        ),
        sa.CheckConstraint(
            "kyc_level IN ('none', 'basic', 'full')",
            name=op.f("ck_profiles_profile_kyc_level_known"),
        ),
    )
    op.create_table(
        "profiles_kyc_submission",
        _text("id", 64, nullable=False),
        _text("user_id", 64, nullable=False),
        _text("status", 16, nullable=False),
        _text("given_name", 100, nullable=False),
        _text("family_name", 100, nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        _text("country", 2, nullable=False),
        _text("document_type", 32, nullable=False),
        _text("document_number", 32, nullable=False),
        _text("document_country", 2, nullable=False),
        _text("provider_check_id", 64),
        _text("level_granted", 8),
        sa.Column("reasons", JSON_TYPE, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profiles_kyc_submission")),
        sa.CheckConstraint(
            "status IN ('pending', 'verified', 'rejected', 'needs_review')",
            name=op.f("ck_profiles_kyc_submission_status_known"),
        ),
    )
    op.create_index(
        "ix_profiles_kyc_submission_user_id_created_at",
        "profiles_kyc_submission",
        ["user_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("profiles_kyc_submission")
    op.drop_table("profiles_profile")
