"""integrations (FHIR, Stripe): receipts, links, a payment's own link; read model rebuilt

Revision ID: 0005_integrations
Revises: 0004_inbox

The read model's stored layout changed (payments carry `payment_url`), so every row is rebuilt
here with the product's own `read_model.rebuild` on the migration's connection (this is also
where a database coming from before 0002 gets its rows). Should a later schema change make
today's code unable to run at this revision, move the rebuild to that later migration.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0005_integrations"
down_revision = "0004_inbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integration_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_ids", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_receipts")),
        sa.UniqueConstraint("source", "key", name=op.f("uq_integration_receipts_source_key")),
    )
    op.create_table(
        "integration_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("patient_source_id", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_links")),
        sa.UniqueConstraint(
            "source", "external_id", name=op.f("uq_integration_links_source_external_id")
        ),
    )
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("payment_url", sa.String(length=500), nullable=True))
    from status import clock, read_model  # today's code, at this revision's schema

    session = Session(bind=op.get_bind())
    now = clock.now()
    after: int | None = 0
    while after is not None:
        _counts, after = read_model.rebuild(session, now, after_id=after)
    session.flush()


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("payment_url")
    op.drop_table("integration_links")
    op.drop_table("integration_receipts")
