"""the turn runner's claim: partial indexes of the unfinished inbox rows

Revision ID: 0009_inbox_unfinished
Revises: 0008_outbox_address_order

The claim (`channels.turns.TurnRunner.claim`) reads the due rows in arrival order, then the
unfinished rows of just their conversations, instead of one anti-join whose cost grew with the
backlog. Both reads use an index holding only the unfinished rows (the backlog, not the
history). The two indexes they replace served only the old claim: fewer indexes to maintain
on every row a webhook stores and a turn finishes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_inbox_unfinished"
down_revision = "0008_outbox_address_order"
branch_labels = None
depends_on = None

UNFINISHED = sa.text("state IN ('pending', 'working')")


def upgrade() -> None:
    op.create_index(
        "ix_inbox_unfinished_id",
        "inbox",
        ["id"],
        postgresql_where=UNFINISHED,
        sqlite_where=UNFINISHED,
    )
    op.create_index(
        "ix_inbox_unfinished_address",
        "inbox",
        ["address", "channel", "clinic_id", "id"],
        postgresql_where=UNFINISHED,
        sqlite_where=UNFINISHED,
    )
    op.drop_index("ix_inbox_state_next_attempt_at", table_name="inbox")
    op.drop_index("ix_inbox_channel_address_id", table_name="inbox")


def downgrade() -> None:
    op.create_index("ix_inbox_state_next_attempt_at", "inbox", ["state", "next_attempt_at"])
    op.create_index("ix_inbox_channel_address_id", "inbox", ["channel", "address", "id"])
    op.drop_index("ix_inbox_unfinished_address", table_name="inbox")
    op.drop_index("ix_inbox_unfinished_id", table_name="inbox")
