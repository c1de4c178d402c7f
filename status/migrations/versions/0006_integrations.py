"""integrations (FHIR, Stripe): receipts and links per clinic, each clinic's own secrets, a
payment's own link; the read model rebuilt

Revision ID: 0006_integrations
Revises: 0005_clinics

Receipts and links belong to a clinic like everything else (what exists so far is the default
clinic's); the source's own ids (a Stripe event id, a FHIR resource version, a customer id) are
unique per clinic, since two clinics may run the same kind of system. A clinic's row carries its
own integration secrets; the default clinic's stay empty and the environment answers.

The read model's stored layout changed (payments carry `payment_url`), so every row is rebuilt
here with the product's own `read_model.rebuild` on the migration's connection; this is also
where a database coming from before 0002 gets its rows (the backfill once in 0002, then in
0005_clinics). Should a later schema change make today's code unable to run at this revision,
move the rebuild to that later migration.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0006_integrations"
down_revision = "0005_clinics"
branch_labels = None
depends_on = None

CLINIC_SECRETS = (
    ("stripe_webhook_secret", 256),
    ("stripe_api_key", 256),
    ("stripe_patient_match", 64),
    ("fhir_webhook_secret", 256),
    ("fhir_bearer_token", 256),
    ("fhir_patient_id_system", 500),
)


def _clinic_id() -> sa.Column:
    # The tables are new, so there is nothing to fill: every insert names its clinic.
    return sa.Column("clinic_id", sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "integration_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        _clinic_id(),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_integration_receipts_clinic_id_clinics")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_receipts")),
        sa.UniqueConstraint(
            "clinic_id", "source", "key", name=op.f("uq_integration_receipts_clinic_id_source_key")
        ),
    )
    op.create_index(
        "ix_integration_receipts_clinic_id_outcome", "integration_receipts", ["clinic_id", "outcome"]
    )
    op.create_table(
        "integration_links",
        sa.Column("id", sa.Integer(), nullable=False),
        _clinic_id(),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("patient_source_id", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_integration_links_clinic_id_clinics")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_links")),
        sa.UniqueConstraint(
            "clinic_id", "source", "external_id",
            name=op.f("uq_integration_links_clinic_id_source_external_id"),
        ),
    )  # fmt: skip
    with op.batch_alter_table("clinics") as batch:
        for name, length in CLINIC_SECRETS:
            batch.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("payment_url", sa.String(length=500), nullable=True))

    # today's code, at this revision's schema (see the docstring)
    from status import clock, read_model

    session = Session(bind=op.get_bind())
    now = clock.now()
    after: int | None = 0
    while after is not None:
        _counts, after = read_model.rebuild(session, now, after_id=after)
    session.flush()


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("payment_url")
    with op.batch_alter_table("clinics") as batch:
        for name, _length in reversed(CLINIC_SECRETS):
            batch.drop_column(name)
    op.drop_index("ix_integration_receipts_clinic_id_outcome", table_name="integration_receipts")
    op.drop_table("integration_links")
    op.drop_table("integration_receipts")
