"""patient_snapshots: the snapshot's read model, one row per patient, backfilled

Revision ID: 0002_issue_12_readmodel
Revises: 0001
Create Date: 2026-11-26 14:10:00

The backfill runs the product's own `read_model.rebuild` on the migration's connection, so an
upgraded database answers from the read model at once (no manual `snapshot rebuild`). Should a
later schema change make today's code unable to run at this revision, drop the backfill here:
reads fall back to a fresh build for a patient without a row, and `patient-status snapshot
rebuild` fills the table.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0002_issue_12_readmodel"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_snapshots",
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"],
            name=op.f("fk_patient_snapshots_patient_id_patients"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_patient_snapshots")),
    )
    from status import clock, read_model

    session = Session(bind=op.get_bind())
    now = clock.now()
    after: int | None = 0
    while after is not None:
        _counts, after = read_model.rebuild(session, now, after_id=after)
    session.flush()


def downgrade() -> None:
    op.drop_table("patient_snapshots")
