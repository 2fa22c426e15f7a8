"""notifications: messages, template versions, preferences, devices"""

import sqlalchemy as sa
from alembic import op

from paymesh.kernel.db import UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(160), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("about", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("template_id", sa.String(40), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("provider_message_id", sa.String(255), nullable=True),
        sa.Column("last_error", sa.String(1000), nullable=True),
        sa.Column("provider_error_code", sa.String(64), nullable=True),
        sa.Column("dead_lettered_at", UTCDateTime(), nullable=True),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("failed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint(
            "event_id", "user_id", "channel", name=op.f("uq_notification_event_id_user_id_channel")
        ),
    )
    op.create_index("ix_notification_due", "notification", ["status", "next_attempt_at"])
    op.create_index("ix_notification_user_id", "notification", ["user_id", "id"])
    op.create_index(
        "ix_notification_provider_message_id", "notification", ["channel", "provider_message_id"]
    )
    op.create_table(
        "notification_template",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", "version", name=op.f("pk_notification_template")),
        sa.UniqueConstraint(
            "event_type",
            "channel",
            "locale",
            "version",
            name=op.f("uq_notification_template_event_type_channel_locale_version"),
        ),
    )
    op.create_index("ix_notification_template_event_type", "notification_template", ["event_type"])
    op.create_table(
        "notification_preference",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("opted_out", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_notification_preference")),
    )
    op.create_table(
        "notification_device",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("token", sa.String(4096), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_device")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_notification_device_token_hash")),
    )
    op.create_index("ix_notification_device_user_id", "notification_device", ["user_id"])


def downgrade() -> None:
    op.drop_table("notification_device")
    op.drop_table("notification_preference")
    op.drop_table("notification_template")
    op.drop_table("notification")
