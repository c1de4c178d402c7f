"""What a turn and a piece of news read about one patient does not grow with the clinic's history.

A clinic keeps up to a status-page link a patient a day. Every turn's opening read asks whether
one was made for the patient today (`bot/turn/opening.py`), and so does every piece of news
(`links.issued_since`). Without an index on the patient those reads scanned every link the
clinic ever made: after 30 days of 2,000 patients a
turn cost PostgreSQL 19.7 ms instead of 1.6 (docs/performance.md, round 15). PostgreSQL's own
plans are checked here, on a database with a month of history and fresh statistics, as a
clinic's would have.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bot.turn import opening
from status import caregivers, links, patients
from status.clinics import DEFAULT_ID
from status.events.apply import apply_events
from status.events.schemas import parse_events
from status.links import StatusLink
from tests.builders import T0, patient_event

PATIENTS = 120
DAYS = 40
MARIA = "+15550100001"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize(
        "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
    ),
]


def _month_of_history(database) -> None:
    """PATIENTS patients (Maria first), a link each a day for DAYS days, a caregiver each."""
    people = [patient_event()] + [
        patient_event(f"p-{n}", first_name=f"P{n}", phone=f"+1555020{n:04d}")
        for n in range(2, PATIENTS + 1)
    ]
    with database.session() as session:
        apply_events(session, parse_events(people))
        ids = session.scalars(select(patients.Patient.id).order_by(patients.Patient.id)).all()
        rows = [
            {
                "clinic_id": DEFAULT_ID,
                "patient_id": patient_id,
                "token_hash": links.token_hash(uuid.uuid4().hex),
                "created_at": T0 - timedelta(days=day),
                "expires_at": T0 - timedelta(days=day - 1),
                "created_by": "bot",
                "failed_tries": 0,
            }
            for day in range(1, DAYS + 1)
            for patient_id in ids
        ]
        session.execute(StatusLink.__table__.insert(), rows)
        for patient in session.scalars(select(patients.Patient)):
            caregivers.add(
                session, patient, name="Ana", relation="daughter", channel="sms",
                address=f"+1555030{patient.id:04d}", topics="shipping", may_ask=True, now=T0,
                created_by="staff:1",
            )  # fmt: skip
    with database.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def _scans(session: Session, statement: Any, values: dict[str, Any]) -> set[tuple[str, str]]:
    """(node type, table) of every node of PostgreSQL's plan for the statement."""
    compiled = statement.compile(dialect=session.get_bind().dialect)
    sql = f"EXPLAIN (FORMAT JSON) {compiled}"
    [[plan]] = session.connection().exec_driver_sql(sql, compiled.construct_params(values)).all()
    found: set[tuple[str, str]] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node:
            found.add((node["Node Type"], node["Relation Name"]))
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def test_a_turns_opening_read_finds_todays_link_without_reading_the_clinics_history(database):
    _month_of_history(database)
    since = T0 - timedelta(hours=12)
    values = {"clinic_id": DEFAULT_ID, "channel": "sms", "address": MARIA, "since": since}
    with database.session() as session:
        maria = patients.by_source_id(session, DEFAULT_ID, "p-1")
        assert not opening.read(session, DEFAULT_ID, "sms", MARIA, since).linked_since[
            (maria.id, None)
        ]  # her links are all from earlier days
        links.issue(session, maria, hours=24, now=T0, created_by="bot")
        assert opening.read(session, DEFAULT_ID, "sms", MARIA, since).linked_since[(maria.id, None)]
        scans = _scans(session, opening._READ["sms"], values)
    assert ("Seq Scan", "status_links") not in scans, scans
    assert {table for _, table in scans} >= {"status_links", "conversations", "patients"}


def test_news_asks_whether_the_patient_has_a_link_today_without_reading_everyones(database):
    _month_of_history(database)
    with database.session() as session:
        maria = patients.by_source_id(session, DEFAULT_ID, "p-1")
        assert not links.issued_since(session, DEFAULT_ID, maria.id, T0 - timedelta(hours=12))
        assert links.issued_since(session, DEFAULT_ID, maria.id, T0 - timedelta(days=1, hours=1))
        [carer] = caregivers.for_patient(session, DEFAULT_ID, maria.id)
        assert carer.address == f"+1555030{maria.id:04d}"
        link_query = select(StatusLink.id).where(
            StatusLink.clinic_id == DEFAULT_ID,
            StatusLink.patient_id == maria.id,
            StatusLink.created_at >= T0 - timedelta(hours=12),
            StatusLink.revoked_at.is_(None),
        )
        scans = _scans(session, link_query, {})
    assert ("Seq Scan", "status_links") not in scans, scans
