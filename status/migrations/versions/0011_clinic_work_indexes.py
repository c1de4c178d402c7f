"""indexes for the scheduler's and the staff pages' reads of a clinic's items and hand-offs

Revision ID: 0011_clinic_work_indexes
Revises: 0010_patient_history_indexes

Every scheduler tick (30 s) asks, per clinic, which items have sat in a status too long
(`items.stuck`, once per entry of STUCK_HOURS: eleven by default), whose refill falls in the
next days (`prescriptions.refills_due`) and which failed payments the processor retries soon
(`payments.retrying`). The item tables had no index but the patient's and the source id, so
each of those questions read every item the clinic ever had: about 180 ms of PostgreSQL a tick
at 100,000 items a table, growing with the clinic's age. The staff queue's resolved view and
the hand-off API's list read every hand-off the same way, and sorted them.

The (clinic_id, status) index of hand-offs becomes (clinic_id, status, resolved_at, id), which
serves what it served and the resolved view's order too. A plain CREATE INDEX: writes to these
tables (events applied, hand-offs) wait while the indexes build.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_clinic_work_indexes"
down_revision = "0010_patient_history_indexes"
branch_labels = None
depends_on = None

ITEMS = [
    "prescriptions",
    "shipments",
    "refills",
    "payments",
    "subscriptions",
    "appointments",
    "tasks",
]
WITH_DATE = sa.text("next_refill_date IS NOT NULL")


def upgrade() -> None:
    for table in ITEMS:
        op.create_index(
            f"ix_{table}_clinic_id_status_status_since",
            table,
            ["clinic_id", "status", "status_since"],
        )
    op.create_index(
        "ix_prescriptions_clinic_id_next_refill_date",
        "prescriptions",
        ["clinic_id", "next_refill_date"],
        postgresql_where=WITH_DATE,
        sqlite_where=WITH_DATE,
    )
    op.create_index(
        "ix_handoffs_clinic_id_status_resolved_at",
        "handoffs",
        ["clinic_id", "status", "resolved_at", "id"],
    )
    op.create_index("ix_handoffs_clinic_id_created_at", "handoffs", ["clinic_id", "created_at"])
    op.drop_index("ix_handoffs_clinic_id_status", table_name="handoffs")


def downgrade() -> None:
    op.create_index("ix_handoffs_clinic_id_status", "handoffs", ["clinic_id", "status"])
    op.drop_index("ix_handoffs_clinic_id_created_at", table_name="handoffs")
    op.drop_index("ix_handoffs_clinic_id_status_resolved_at", table_name="handoffs")
    op.drop_index("ix_prescriptions_clinic_id_next_refill_date", table_name="prescriptions")
    for table in reversed(ITEMS):
        op.drop_index(f"ix_{table}_clinic_id_status_status_since", table_name=table)
