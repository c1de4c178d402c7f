"""The snapshot answers each demo case the way the bot and staff need it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from status import demo, patients, snapshot
from status.clinics import DEFAULT_ID
from status.db import utcnow
from tests.conftest import on_both_databases

NOW = utcnow()


@pytest.fixture
def seeded(database):
    with database.session() as session:
        demo.seed(session, now=NOW)
    return database


def snap_of(database, patient_id: str) -> dict:
    with database.session() as session:
        patient = patients.by_source_id(session, DEFAULT_ID, patient_id)
        return snapshot.build(session, patient, now=NOW).to_dict()


@on_both_databases
def test_shipped_prescription_has_its_tracking(seeded):
    snap = snap_of(seeded, "demo-maria")
    rx = snap["prescriptions"][0]
    assert rx["status"] == "shipped"
    assert rx["shipment_id"] == "ship-maria-1"
    assert rx["seconds_in_status"] == int(timedelta(days=2).total_seconds())
    shipment = snap["shipments"][0]
    assert shipment["carrier"] == "UPS"
    assert shipment["tracking_url"].endswith("1Z999AA10123456784")
    assert shipment["estimated_delivery"] == (NOW + timedelta(days=1)).date().isoformat()
    assert snap["next_step"]["kind"] == "await_delivery"
    assert snap["billing"]["balance_due_cents"] == 0
    assert snap["billing"]["next_renewal"]["amount_cents"] == 29900


@on_both_databases
def test_blocked_prescription_points_at_the_patient_task(seeded):
    snap = snap_of(seeded, "demo-james")
    assert snap["prescriptions"][0]["status"] == "blocked"
    assert snap["prescriptions"][0]["task_id"] == "task-james-id"
    step = snap["next_step"]
    assert (step["kind"], step["owner"]) == ("complete_task", "patient")
    assert step["url"] == "https://portal.example/tasks/upload-id"


@on_both_databases
def test_failed_payment_shows_balance_retry_and_update_link(seeded):
    snap = snap_of(seeded, "demo-aisha")
    billing = snap["billing"]
    assert billing["balance_due_cents"] == 29900
    failed = billing["failed_payments"][0]
    assert failed["failure_reason"] == "card expired"
    assert failed["next_retry_at"].startswith((NOW + timedelta(days=3)).date().isoformat())
    assert billing["subscription"]["status"] == "past_due"
    assert snap["next_step"]["kind"] == "update_payment"
    assert snap["next_step"]["url"] == "https://pay.example/update"


@on_both_databases
def test_refill_due_soon_is_the_next_step(seeded):
    snap = snap_of(seeded, "demo-luis")
    assert snap["refills"]["next_due_date"] == (NOW + timedelta(days=4)).date().isoformat()
    assert snap["prescriptions"][0]["refills_remaining"] == 2
    assert snap["next_step"]["kind"] == "request_refill"
    assert snap["patient"]["language"] == "es"


@on_both_databases
def test_appointment_tomorrow_is_upcoming_with_its_prep_task(seeded):
    snap = snap_of(seeded, "demo-emily")
    appointment = snap["appointments"][0]
    assert appointment["visit_type"] == "Video follow-up"
    assert appointment["join_url"] == "https://visit.example/j/emily"
    assert snap["tasks"][0]["title"] == "Finish the intake form"
    assert snap["next_step"]["kind"] == "complete_task"


@on_both_databases
def test_shared_family_phone_maps_to_both_patients(seeded):
    with seeded.session() as session:
        family = patients.by_phone(session, DEFAULT_ID, "+15550100006")
        assert [p.first_name for p in family] == ["Sofia", "Diego"]
    assert snap_of(seeded, "demo-sofia")["next_step"]["kind"] == "await_provider"
    assert snap_of(seeded, "demo-diego")["next_step"]["kind"] == "pick_up"


def test_reseeding_the_demo_changes_nothing(seeded):
    with seeded.session() as session:
        result = demo.seed(session, now=NOW)
    assert result.applied == 0
    assert result.duplicates == len(demo.demo_events(NOW))


def test_paid_but_not_sent_after_48_hours_is_flagged(database):
    from status.events.apply import apply_events
    from status.events.schemas import parse_events
    from tests.builders import at, patient_event, payment_event, prescription_event

    events = [
        patient_event(occurred_at=at(-100)),
        payment_event("succeeded", occurred_at=at(-90)),
        prescription_event("approved", occurred_at=at(-60 * 50)),
    ]
    with database.session() as session:
        apply_events(session, parse_events(events))
        patient = patients.by_source_id(session, DEFAULT_ID, "p-1")
        from tests.builders import T0

        alerts = snapshot.build(session, patient, now=T0).alerts
    assert any("not sent to the pharmacy" in alert for alert in alerts)
