"""patient_snapshots: the snapshot's read model, one row per patient, backfilled

Revision ID: 0002_issue_12_readmodel
Revises: 0001
Create Date: 2026-11-26 14:10:00

The backfill runs the product's own `read_model.refresh`, so it lives in the newest migration
(today 0006_integrations), where the schema is the one the code reads: an upgraded database answers
from the read model at once (no manual `snapshot rebuild`).
"""

import sqlalchemy as sa
from alembic import op

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


def downgrade() -> None:
    op.drop_table("patient_snapshots")
