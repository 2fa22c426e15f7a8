"""identity: a rate-limit tier on every client (unlimited | gold | silver | bronze)

Existing clients get `bronze`; the platform's own service accounts (`service-<name>`, the
ids of `paymesh.kernel.oidc.service_client_id`) get `unlimited`. The values are written
out here rather than imported, so this revision stays what it was when later code moves.
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

KNOWN_TIERS = "'unlimited', 'gold', 'silver', 'bronze'"
PLATFORM_SERVICE_CLIENT = re.compile(r"^service-[a-z][a-z0-9_]{1,31}$")

clients = sa.table(
    "identity_client", sa.column("id", sa.String), sa.column("rate_limit_tier", sa.String)
)


def upgrade() -> None:
    with op.batch_alter_table("identity_client") as batch:
        batch.add_column(
            sa.Column(
                "rate_limit_tier",
                sa.String(length=16),
                server_default="bronze",
                nullable=False,
                comment="unlimited | gold | silver | bronze",
            )
        )
        batch.create_check_constraint(
            op.f("ck_identity_client_rate_limit_tier_known"),
            sa.text(f"rate_limit_tier IN ({KNOWN_TIERS})"),
        )
    _platform_services_unlimited()


def _platform_services_unlimited() -> None:
    # LIKE narrows the rows read; the pattern picks exactly the built-in service ids.
    bind = op.get_bind()
    candidates = bind.scalars(sa.select(clients.c.id).where(clients.c.id.like("service-%")))
    service_ids = [
        client_id for client_id in candidates if PLATFORM_SERVICE_CLIENT.match(client_id)
    ]
    if service_ids:
        op.execute(
            clients.update()
            .where(clients.c.id.in_(service_ids))
            .values(rate_limit_tier="unlimited")
        )


def downgrade() -> None:
    with op.batch_alter_table("identity_client") as batch:
        batch.drop_constraint(op.f("ck_identity_client_rate_limit_tier_known"), type_="check")
        batch.drop_column("rate_limit_tier")
