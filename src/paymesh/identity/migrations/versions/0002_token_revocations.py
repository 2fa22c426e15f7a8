"""identity: revocations of access tokens (token, refresh family, session, user, client)"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "identity_token_revocation",
        sa.Column(
            "kind",
            sa.String(length=16),
            nullable=False,
            comment="token | family | session | subject | client",
        ),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column(
            "not_before",
            sa.Float(precision=53),
            nullable=False,
            comment="unix time; covered tokens issued earlier are refused",
        ),
        sa.Column(
            "expires_at",
            sa.Float(precision=53),
            nullable=False,
            comment="unix time; no covered token lives longer",
        ),
        sa.PrimaryKeyConstraint("kind", "value", name=op.f("pk_identity_token_revocation")),
    )
    op.create_index(
        op.f("ix_identity_token_revocation_expires_at"),
        "identity_token_revocation",
        ["expires_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_identity_token_revocation_expires_at"), table_name="identity_token_revocation"
    )
    op.drop_table("identity_token_revocation")
