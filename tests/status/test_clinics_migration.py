"""A database made by the previous release (migrations up to 0004_inbox), with data in it,
upgrades in place: everything becomes the default clinic's and keeps working."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import delete, text

from bot.engine import Engine
from bot.inbound import Inbound
from channels.staff.auth import check_password
from channels.staff.models import by_email, memberships
from status import clinics, patients, read_model
from status.clinics import DEFAULT_ID
from status.db import Base, Database
from status.migrate import alembic_config, upgrade
from status.settings import Settings

PREVIOUS = "0004_inbox"
AT = "2026-11-20 14:00:00+00:00"
# What the previous release stored: a patient with a prescription, their conversation and a
# message, an open hand-off, an applied event, a reminder already sent, a staff login, an audit row.
ROWS = [
    "INSERT INTO patients (id, source_id, first_name, last_name, date_of_birth, phone, language,"
    " timezone, sms_consent, preferred_channel, last_event_at, created_at, updated_at) VALUES"
    " (1, 'p-1', 'Maria', 'Lopez', '1985-03-14', '+15550100001', 'en', 'America/New_York', TRUE,"
    " 'sms', :at, :at, :at)",
    "INSERT INTO prescriptions (source_id, patient_id, medication, status, status_since,"
    " last_event_at, created_at, updated_at) VALUES ('rx-1', 1, 'Semaglutide', 'shipped', :at,"
    " :at, :at, :at)",
    "INSERT INTO conversations (id, channel, address, patient_id, failed_verifications,"
    " awaiting_data, unknown_streak, opted_out, bad_address, created_at, updated_at)"
    " VALUES (1, 'sms', '+15550100001', 1, 0, '{}', 0, FALSE, FALSE, :at, :at)",
    "INSERT INTO messages (conversation_id, patient_id, direction, kind, channel, address, body,"
    " intents, media, buttons, data, urgent, priority, attempts, created_at) VALUES (1, 1, 'in',"
    " 'reply', 'sms', '+15550100001', 'hi', '[]', '[]', '[]', '{}', FALSE, 3, 0, :at)",
    "INSERT INTO handoffs (id, patient_id, conversation_id, status, reason, reasons, priority,"
    " queue, summary, context, created_at, owns_conversation, open_key) VALUES (1, 1, 1, 'open',"
    " 'human', '[\"human\"]', 'normal', 'general', 'asked for a person', '{}', :at, TRUE,"
    " 'patient:1')",
    "INSERT INTO events (event_id, type, occurred_at, received_at, patient_source_id,"
    " entity_source_id, payload, outcome, applied_at) VALUES ('evt-1', 'prescription.updated',"
    " :at, :at, 'p-1', 'rx-1', '{}', 'applied', :at)",
    "INSERT INTO job_runs (key, created_at) VALUES ('refill_due:rx-1:2026-12-10', :at)",
    "INSERT INTO staff_users (email, name, role, password_hash, active, created_at) VALUES"
    " ('nurse@demo.clinic', 'Demo Nurse', 'admin', :hash, TRUE, :at)",
    "INSERT INTO audit_log (actor, action, patient_id, handoff_id, detail, at) VALUES"
    " ('staff:1', 'viewed', 1, 1, 'hand-off page', :at)",
]


def _previous_release(url: str) -> None:
    from channels.staff.auth import hash_password

    database = Database(url)
    with database.engine.begin() as conn:
        for statement in ROWS:
            conn.execute(text(statement), {"at": AT, "hash": hash_password("demo-password")})
    database.dispose()


def _check_upgraded(url: str) -> None:
    database = Database(url)
    with database.session() as session:
        [clinic] = clinics.all_clinics(session)
        assert (clinic.id, clinic.slug) == (DEFAULT_ID, "default")
        for table in ("patients", "prescriptions", "conversations", "messages", "handoffs",
                      "events", "job_runs", "audit_log"):  # fmt: skip
            owners = session.execute(text(f"SELECT DISTINCT clinic_id FROM {table}")).scalars()
            assert list(owners) == [DEFAULT_ID], table
        maria = patients.by_source_id(session, DEFAULT_ID, "p-1")
        assert maria is not None and maria.first_name == "Maria"
        _, state = read_model.patient_and_state(session, DEFAULT_ID, "p-1")
        assert state is not None  # the read model was backfilled
        nurse = by_email(session, "nurse@demo.clinic")
        assert check_password(nurse, "demo-password")
        assert [(c.slug, role) for c, role in memberships(session, nurse)] == [("default", "admin")]
    # and the assistant answers as before: the open hand-off still owns the conversation
    settings = Settings(_env_file=None, database_url=url, secret_key="s", quiet_hours="off")
    with database.session() as session:
        turn = Engine(settings).handle(session, Inbound("sms", "+15550100001", "hello?"))
        assert turn.handoff is not None and turn.handoff.id == 1
        assert turn.inbound.clinic_id == DEFAULT_ID
    database.dispose()


def test_a_previous_release_sqlite_database_upgrades_into_the_default_clinic(tmp_path):
    url = f"sqlite:///{tmp_path / 'previous.db'}"
    upgrade(url, PREVIOUS)
    _previous_release(url)
    upgrade(url)
    _check_upgraded(url)


@pytest.mark.postgres
def test_a_previous_release_postgres_database_upgrades_into_the_default_clinic(postgres_url):
    database = Database(postgres_url, pool_size=2, max_overflow=0)
    with database.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "clinics":
                session.execute(delete(table))
    database.dispose()
    command.downgrade(alembic_config(postgres_url), PREVIOUS)
    _previous_release(postgres_url)
    upgrade(postgres_url)
    _check_upgraded(postgres_url)
    database = Database(postgres_url, pool_size=2, max_overflow=0)
    with database.session() as session:  # leave the shared database empty for the next test
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "clinics":
                session.execute(delete(table))
    database.dispose()
