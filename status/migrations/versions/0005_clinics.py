"""clinics: many clinics in one deployment; everything stored so far becomes the clinic `default`

Revision ID: 0005_clinics
Revises: 0004_inbox

The clinic `default` (id 1) is the one the environment configures (`CLINIC_NAME`, `API_KEY`,
`TWILIO_FROM_NUMBER`, ...): its row leaves those columns empty, so the settings keep their
meaning. Every row that belongs to a clinic gets `clinic_id` 1; ids that were unique in the
deployment (a patient id, a prescription id, an event id, a conversation's address) become
unique per clinic. Staff logins become members of the default clinic with the role they had.

The read-model backfill (formerly in 0002) moved on to 0006_integrations, the newest
migration, where the schema is the one the code reads (payments gained a column there).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_clinics"
down_revision = "0004_inbox"
branch_labels = None
depends_on = None

ITEMS = ("prescriptions", "shipments", "refills", "payments", "subscriptions", "appointments",
         "tasks")  # fmt: skip
# table -> (the unique constraint that was deployment-wide, its columns), now per clinic
PER_CLINIC = {
    "patients": ("uq_patients_source_id", ["source_id"]),
    "events": ("uq_events_event_id", ["event_id"]),
    "conversations": ("uq_conversations_channel_address", ["channel", "address"]),
    "inbox": ("uq_inbox_source_provider_id", ["source", "provider_id"]),
    **{table: (f"uq_{table}_source_id", ["source_id"]) for table in ITEMS},
}
SCOPED = (*PER_CLINIC, "messages", "handoffs", "job_runs", "audit_log")


def _uq_name(table: str, columns: list[str]) -> str:
    return f"uq_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    clinics = op.create_table(
        "clinics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("hours", sa.String(length=100), nullable=True),
        sa.Column("support_phone", sa.String(length=32), nullable=True),
        sa.Column("sla_minutes", sa.JSON(), nullable=True),
        sa.Column("quiet_hours", sa.String(length=32), nullable=True),
        sa.Column("daily_message_cap", sa.Integer(), nullable=True),
        sa.Column("weekly_message_cap", sa.Integer(), nullable=True),
        sa.Column("payment_update_url", sa.String(length=500), nullable=True),
        sa.Column("language", sa.String(length=5), nullable=True),
        sa.Column("twilio_from_numbers", sa.JSON(), nullable=False),
        sa.Column("twilio_messaging_service_sid", sa.String(length=64), nullable=True),
        sa.Column("telegram_bot_token", sa.String(length=100), nullable=True),
        sa.Column("telegram_webhook_secret", sa.String(length=256), nullable=True),
        sa.Column("telegram_bot_username", sa.String(length=64), nullable=True),
        sa.Column("telegram_staff_chat_id", sa.String(length=32), nullable=True),
        sa.Column("display_name", sa.String(length=100), nullable=True),
        sa.Column("brand_color", sa.String(length=16), nullable=True),
        sa.Column("accent_color", sa.String(length=16), nullable=True),
        sa.Column("logo_url", sa.String(length=500), nullable=True),
        sa.Column("templates", sa.JSON(), nullable=False),
        sa.Column("api_key_hash", sa.String(length=64), nullable=True),
        sa.Column("api_key_rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinics")),
        sa.UniqueConstraint("slug", name=op.f("uq_clinics_slug")),
        sa.UniqueConstraint("api_key_hash", name=op.f("uq_clinics_api_key_hash")),
    )
    op.create_index(
        op.f("ix_clinics_twilio_messaging_service_sid"), "clinics", ["twilio_messaging_service_sid"]
    )
    from status import clock

    now = clock.now()
    op.bulk_insert(
        clinics,
        [{"id": 1, "slug": "default", "twilio_from_numbers": [], "templates": {}, "notes": "",
          "created_at": now, "updated_at": now}],
    )  # fmt: skip
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":  # the next clinic must not take id 1 again
        op.execute("SELECT setval(pg_get_serial_sequence('clinics', 'id'), 1)")

    for table in SCOPED:
        with op.batch_alter_table(table) as batch:
            # Filled with the default clinic, then the default is dropped: from now on every
            # insert names its clinic, and one that forgets fails instead of landing in `default`.
            batch.add_column(
                sa.Column("clinic_id", sa.Integer(), nullable=False, server_default="1")
            )
            batch.create_foreign_key(
                f"fk_{table}_clinic_id_clinics", "clinics", ["clinic_id"], ["id"]
            )
            if table in PER_CLINIC:
                old, columns = PER_CLINIC[table]
                batch.drop_constraint(old, type_="unique")
                batch.create_unique_constraint(
                    _uq_name(table, ["clinic_id", *columns]), ["clinic_id", *columns]
                )
        with op.batch_alter_table(table) as batch:
            batch.alter_column("clinic_id", server_default=None, existing_type=sa.Integer())
    op.create_index("ix_handoffs_clinic_id_status", "handoffs", ["clinic_id", "status"])
    op.create_index(op.f("ix_audit_log_clinic_id"), "audit_log", ["clinic_id"])

    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(
            sa.Column("platform_admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "staff_memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_staff_memberships_clinic_id_clinics"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff_users.id"],
            name=op.f("fk_staff_memberships_staff_id_staff_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_memberships")),
        sa.UniqueConstraint(
            "staff_id", "clinic_id", name=op.f("uq_staff_memberships_staff_id_clinic_id")
        ),
    )  # fmt: skip
    op.execute(
        sa.text(
            "INSERT INTO staff_memberships (staff_id, clinic_id, role, created_at) "
            "SELECT id, 1, role, :now FROM staff_users"
        ).bindparams(sa.bindparam("now", now, type_=sa.DateTime(timezone=True)))
    )


def downgrade() -> None:
    op.drop_table("staff_memberships")
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("platform_admin")
    op.drop_index(op.f("ix_audit_log_clinic_id"), table_name="audit_log")
    op.drop_index("ix_handoffs_clinic_id_status", table_name="handoffs")
    for table in reversed(SCOPED):
        # Only the default clinic's rows fit the single-clinic schema.
        op.execute(sa.text(f"DELETE FROM {table} WHERE clinic_id <> 1"))
        with op.batch_alter_table(table) as batch:
            if table in PER_CLINIC:
                old, columns = PER_CLINIC[table]
                batch.drop_constraint(_uq_name(table, ["clinic_id", *columns]), type_="unique")
                batch.create_unique_constraint(old, columns)
            batch.drop_constraint(f"fk_{table}_clinic_id_clinics", type_="foreignkey")
            batch.drop_column("clinic_id")
    op.drop_index(op.f("ix_clinics_twilio_messaging_service_sid"), table_name="clinics")
    op.drop_table("clinics")
