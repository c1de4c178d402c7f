"""indexes for a patient's rows: status-page links, caregivers, conversations, hand-offs

Revision ID: 0010_patient_history_indexes
Revises: 0009_inbox_unfinished

Every turn's opening read asks whether a status-page link was made for the patient since the
start of their day (`bot/turn/opening.py`), as does every piece of proactive news
(`links.issued_since`). `status_links` had no index but its key and its token's hash, so each
of those questions read every link the clinic ever made: a link a patient a day, so a turn's
database time grew with the clinic's age (2.0 ms of PostgreSQL CPU a turn on a fresh database,
19.7 ms after 30 days of 2,000 patients; docs/performance.md, round 15). A patient's
caregivers (news), conversations and hand-offs (staff pages) were read the same way, as were
these four tables when a patient was deleted (the foreign keys cascade).

A plain CREATE INDEX: writes to these four tables wait while it builds (the inbox, where
webhooks store messages, does not).
"""

from alembic import op

revision = "0010_patient_history_indexes"
down_revision = "0009_inbox_unfinished"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_status_links_patient_id_created_at", "status_links", ["patient_id", "created_at"]),
    ("ix_caregivers_patient_id", "caregivers", ["patient_id"]),
    ("ix_conversations_patient_id", "conversations", ["patient_id"]),
    ("ix_handoffs_patient_id", "handoffs", ["patient_id"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
