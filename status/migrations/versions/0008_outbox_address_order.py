"""the outbox's per-address order: a partial index of unsent messages by address

Revision ID: 0008_outbox_address_order
Revises: 0007_status_links

The dispatcher claims a message only when nothing to its address is in flight and nothing due
before it is waiting (`channels.dispatcher.holds_back`); that probe reads this index,
which holds only the few rows not yet handed to the provider.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_outbox_address_order"
down_revision = "0007_status_links"
branch_labels = None
depends_on = None

UNSENT = sa.text("status IN ('pending', 'sending')")


def upgrade() -> None:
    op.create_index(
        "ix_messages_unsent_address",
        "messages",
        ["address", "channel", "clinic_id"],
        postgresql_where=UNSENT,
        sqlite_where=UNSENT,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_unsent_address", table_name="messages")
