"""identity: kernel tables, users and roles, TOTP, clients, codes, tokens, sessions, keys,
login failures"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import JSON_TYPE, UTCDateTime
from paymesh.kernel.migrations import create_kernel_tables, drop_kernel_tables

revision = "0001"
down_revision = None

TABLES = (
    "identity_totp_factor",
    "identity_recovery_code",
    "identity_user_role",
    "identity_login_session",
    "identity_user",
    "identity_signing_key",
    "identity_revoked_access_token",
    "identity_refresh_token",
    "identity_login_failure",
    "identity_client",
    "identity_authorization_code",
)


def upgrade() -> None:
    create_kernel_tables()
    op.create_table(
        "identity_authorization_code",
        sa.Column("code_hash", sa.String(length=128), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=True),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("nonce", sa.String(length=512), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column(
            "code_challenge_method", sa.String(length=8), nullable=False, comment="S256 only"
        ),
        sa.Column("auth_time", UTCDateTime(), nullable=False),
        sa.Column("amr", JSON_TYPE, nullable=False),
        sa.Column(
            "family_id",
            sa.String(length=40),
            nullable=True,
            comment="refresh family issued for it (revoked on reuse)",
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_identity_authorization_code")),
    )
    op.create_table(
        "identity_client",
        sa.Column("id", sa.String(length=128), nullable=False, comment="client_id"),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=128), nullable=True),
        sa.Column("redirect_uris", JSON_TYPE, nullable=False),
        sa.Column("post_logout_redirect_uris", JSON_TYPE, nullable=False),
        sa.Column("grant_types", JSON_TYPE, nullable=False),
        sa.Column("scopes", JSON_TYPE, nullable=False, comment="scopes it may ask for"),
        sa.Column("roles", JSON_TYPE, nullable=False, comment="service-account roles"),
        sa.Column("audience", JSON_TYPE, nullable=False, comment="extra token audiences"),
        sa.Column("first_party", sa.Boolean(), nullable=False),
        sa.Column("password_grant_allowed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, comment="active | disabled"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_client")),
    )
    op.create_table(
        "identity_login_failure",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("last_failed_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_identity_login_failure")),
    )
    op.create_table(
        "identity_refresh_token",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("family_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("auth_time", UTCDateTime(), nullable=False),
        sa.Column("amr", JSON_TYPE, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("rotated_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_refresh_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_identity_refresh_token_token_hash")),
    )
    op.create_index(
        "ix_identity_refresh_token_family_id", "identity_refresh_token", ["family_id"], unique=False
    )
    op.create_index(
        "ix_identity_refresh_token_user_id", "identity_refresh_token", ["user_id"], unique=False
    )
    op.create_table(
        "identity_revoked_access_token",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_identity_revoked_access_token")),
    )
    op.create_index(
        op.f("ix_identity_revoked_access_token_expires_at"),
        "identity_revoked_access_token",
        ["expires_at"],
        unique=False,
    )
    op.create_table(
        "identity_signing_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column(
            "private_jwk", sa.Text(), nullable=False, comment="encrypted (AES-GCM) private JWK"
        ),
        sa.Column("public_jwk", JSON_TYPE, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column(
            "retired_at", UTCDateTime(), nullable=True, comment="no longer signs from here on"
        ),
        sa.Column("expires_at", UTCDateTime(), nullable=True, comment="leaves JWKS from here on"),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_identity_signing_key")),
    )
    op.create_table(
        "identity_user",
        sa.Column("id", sa.String(length=40), nullable=False, comment="usr_<ulid>"),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("given_name", sa.String(length=150), nullable=True),
        sa.Column("family_name", sa.String(length=150), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True, comment="E.164"),
        sa.Column("status", sa.String(length=16), nullable=False, comment="active | disabled"),
        sa.Column(
            "password_hash",
            sa.Text(),
            nullable=True,
            comment="Argon2id (pwdlib); null: no password login",
        ),
        sa.Column("external_id", sa.String(length=255), nullable=True, comment="SCIM externalId"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_user")),
        sa.UniqueConstraint("email", name=op.f("uq_identity_user_email")),
        sa.UniqueConstraint("username", name=op.f("uq_identity_user_username")),
    )
    op.create_index(
        "ix_identity_user_created_at_id", "identity_user", ["created_at", "id"], unique=False
    )
    op.create_table(
        "identity_login_session",
        sa.Column("id", sa.String(length=40), nullable=False, comment="sid claim"),
        sa.Column("secret_hash", sa.String(length=128), nullable=False, comment="cookie value"),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("amr", JSON_TYPE, nullable=False),
        sa.Column("auth_time", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_user.id"],
            name=op.f("fk_identity_login_session_user_id_identity_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_login_session")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_identity_login_session_secret_hash")),
    )
    op.create_index(
        "ix_identity_login_session_user_id", "identity_login_session", ["user_id"], unique=False
    )
    op.create_table(
        "identity_recovery_code",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("code_hash", sa.String(length=128), nullable=False, comment="SHA-256 hex"),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_user.id"],
            name=op.f("fk_identity_recovery_code_user_id_identity_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_recovery_code")),
    )
    op.create_index(
        "ix_identity_recovery_code_user_id", "identity_recovery_code", ["user_id"], unique=False
    )
    op.create_table(
        "identity_totp_factor",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False, comment="base32 secret, encrypted at rest"),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column(
            "last_used_step",
            sa.Integer(),
            nullable=True,
            comment="time step of the last accepted code (no replays)",
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_user.id"],
            name=op.f("fk_identity_totp_factor_user_id_identity_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_identity_totp_factor")),
    )
    op.create_table(
        "identity_user_role",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_user.id"],
            name=op.f("fk_identity_user_role_user_id_identity_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "role", name=op.f("pk_identity_user_role")),
    )
    op.create_index("ix_identity_user_role_role", "identity_user_role", ["role"], unique=False)


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
    drop_kernel_tables()
