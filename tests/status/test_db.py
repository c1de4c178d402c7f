"""The database layer: SQLite reads run beside a writer; writes take the lock up front."""

from __future__ import annotations

from sqlalchemy import func, select, text

from status.patients import Patient


def test_sqlite_read_runs_while_a_write_transaction_is_open(database):
    with database.session() as writer:
        writer.execute(text("CREATE TABLE IF NOT EXISTS scratch (n INTEGER)"))
        writer.execute(text("INSERT INTO scratch VALUES (1)"))  # holds the write lock
        with database.read_session() as reader:  # would wait busy_timeout, then fail
            assert reader.scalar(select(func.count()).select_from(Patient)) == 0
            assert reader.scalar(text("SELECT count(*) FROM sqlite_master")) > 0


def test_objects_read_in_a_read_session_stay_usable_after_it(database):
    from status.events.apply import apply_events
    from status.events.schemas import parse_events
    from tests.builders import patient_event

    with database.session() as session:
        apply_events(session, parse_events([patient_event()]))
    with database.read_session() as session:
        patient = session.scalars(select(Patient)).one()
    assert patient.first_name == "Maria"
