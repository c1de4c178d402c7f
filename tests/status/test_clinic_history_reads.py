"""The scheduler's and the staff pages' reads of a clinic's items and hand-offs use an index.

Every scheduler tick (30 s) asks, per clinic, which items sat in a status too long, whose refill
is near and which failed payments are retried soon; the staff queue lists resolved hand-offs.
Without an index each of those read every row the clinic ever had (migration 0011). Here a
clinic has a year of items and hand-offs, mostly finished as a clinic's are, with fresh
statistics; the product's own statements are captured as they run and PostgreSQL's plan for
each is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from bot import handoffs
from bot.handoffs import HandoffStatus
from channels.staff import queue
from status import items, payments, prescriptions
from status.clinics import DEFAULT_ID
from status.payments import Payment
from status.prescriptions import Prescription, PrescriptionStatus
from tests.builders import T0

ROWS = 20_000

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize(
        "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
    ),
]

# A year of a clinic's work, written directly (`g` numbers the rows; most items finished).
YEAR = [
    """INSERT INTO patients (clinic_id, source_id, first_name, last_name, date_of_birth, phone,
        language, timezone, sms_consent, preferred_channel, last_event_at, created_at, updated_at)
    SELECT 1, 'p-' || g, 'F', 'L', DATE '1980-01-01', '+1555' || lpad(g::text, 7, '0'), 'en',
        'America/New_York', true, 'sms', :t0, :t0, :t0
    FROM generate_series(1, 500) g""",
    """INSERT INTO prescriptions (clinic_id, source_id, patient_id, medication, status,
        refills_remaining, next_refill_date, status_since, last_event_at, created_at, updated_at)
    SELECT 1, 'rx-' || g, 1 + g % 500, 'med',
        CASE WHEN g % 100 < 90 THEN 'delivered' ELSE 'processing' END, 3,
        CASE WHEN g % 100 < 5 THEN CAST(:t0 AS date) - 300 + g % 330 END,
        CAST(:t0 AS timestamptz) - (g % 365) * INTERVAL '1 day', :t0, :t0, :t0
    FROM generate_series(1, :rows) g""",
    """INSERT INTO payments (clinic_id, source_id, patient_id, amount_cents, currency, status,
        description, next_retry_at, ever_failed, status_since, last_event_at, created_at,
        updated_at)
    SELECT 1, 'pay-' || g, 1 + g % 500, 1000, 'usd',
        CASE WHEN g % 100 < 98 THEN 'succeeded' ELSE 'failed' END, 'monthly',
        CASE WHEN g % 100 >= 98 THEN CAST(:t0 AS timestamptz) + (g % 365) * INTERVAL '1 hour' END,
        g % 100 >= 98, CAST(:t0 AS timestamptz) - (g % 365) * INTERVAL '1 day', :t0, :t0, :t0
    FROM generate_series(1, :rows) g""",
    """INSERT INTO handoffs (clinic_id, patient_id, status, reason, reasons, priority, queue,
        summary, context, owns_conversation, created_at, resolved_at)
    SELECT 1, 1 + g % 500, 'resolved', 'question', '[]', 'normal', 'general', 's', '{}', true,
        CAST(:t0 AS timestamptz) - g * INTERVAL '15 minutes',
        CAST(:t0 AS timestamptz) - g * INTERVAL '15 minutes' + INTERVAL '1 hour'
    FROM generate_series(1, :rows) g""",
]


def _a_year_of_work(database) -> None:
    with database.engine.begin() as conn:
        for statement in YEAR:
            conn.execute(text(statement), {"t0": T0, "rows": ROWS})
        conn.execute(text("ANALYZE"))


def _whole_tables(session: Session, run: Callable[[], Any]) -> set[str]:
    """The tables PostgreSQL's plans read whole for the statements `run` sends."""
    sent: list[tuple[str, Any]] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", note)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert sent, "no statement ran"
    scanned: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if node["Node Type"] == "Seq Scan":
            scanned.add(node["Relation Name"])
        for child in node.get("Plans", ()):
            walk(child)

    for statement, parameters in sent:
        explain = f"EXPLAIN (FORMAT JSON) {statement}"
        [[plan]] = session.connection().exec_driver_sql(explain, parameters).all()
        walk(plan[0]["Plan"])
    return scanned


def test_the_schedulers_questions_read_the_items_that_answer_them_not_the_clinics_year(
    database,
):
    _a_year_of_work(database)
    with database.session() as session:
        found: dict[str, list[int]] = {}

        def ask() -> None:
            found["stuck"] = items.stuck(
                session, DEFAULT_ID, Prescription, PrescriptionStatus.PROCESSING, 72, T0
            )
            found["refills"] = prescriptions.refills_due(
                session, DEFAULT_ID, T0.date(), T0.date() + timedelta(days=3)
            )
            found["retries"] = payments.retrying(session, DEFAULT_ID, T0, T0 + timedelta(days=1))
            found["failed"] = items.stuck(session, DEFAULT_ID, Payment, "failed", 72, T0)

        scanned = _whole_tables(session, ask)
    assert scanned == set()
    # the answers are the clinic's: a tenth of its prescriptions processing (all but a few for
    # longer than 72 hours), 2 % of its payments failed (a few retried in the next day), a
    # twentieth of its prescriptions with a refill date spread over 330 days
    assert 1_900 < len(found["stuck"]) < ROWS // 10
    assert 0 < len(found["retries"]) < 40
    assert 350 < len(found["failed"]) < ROWS // 50
    assert 0 < len(found["refills"]) < 30


def test_the_staff_queues_resolved_view_and_the_handoff_list_read_the_newest_only(database):
    _a_year_of_work(database)
    with database.session() as session:
        shown: dict[str, list[Any]] = {}

        def look() -> None:
            shown["resolved"] = queue.recently_resolved(session, DEFAULT_ID, now=T0)
            shown["api"] = handoffs.list_handoffs(session, [DEFAULT_ID], limit=50)
            shown["api resolved"] = handoffs.list_handoffs(
                session, [DEFAULT_ID], HandoffStatus.RESOLVED, limit=50
            )

        scanned = _whole_tables(session, look)
    assert "handoffs" not in scanned, scanned
    assert len(shown["resolved"]) == len(shown["api"]) == 50
    assert shown["api"][0].created_at == T0 - timedelta(minutes=15)  # the newest first
