"""POST /events: idempotent, ordered, atomic, and clear about what is wrong."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from channels.app import create_app
from status.events.store import StoredEvent
from status.patients import Patient
from status.prescriptions import Prescription
from status.timeline import TimelineEntry
from tests.builders import at, event, patient_event, payment_event, prescription_event
from tests.conftest import API_KEY, on_both_databases

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def client(settings, database):
    with TestClient(create_app(settings, database)) as client:
        yield client


def count(database, model) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def post(client, body, headers=AUTH):
    return client.post("/events", json=body, headers=headers)


@on_both_databases
def test_redelivered_event_answers_success_and_changes_nothing(client, database):
    first = post(client, {"events": [patient_event(), prescription_event(event_id="rx-evt")]})
    again = post(client, prescription_event(event_id="rx-evt", status="shipped"))
    assert first.status_code == 202
    assert first.json()["applied"] == 2
    assert again.status_code == 202
    assert again.json() == {"accepted": 1, "applied": 0, "duplicates": 1, "stale": 0, "pending": 0}
    with database.session() as session:
        assert session.scalars(select(Prescription.status)).one() == "approved"
    assert count(database, TimelineEntry) == 2


@on_both_databases
def test_stale_event_does_not_regress_shipped_prescription(client, database):
    post(client, patient_event(occurred_at=at(-60)))
    post(client, prescription_event("shipped", occurred_at=at(10)))
    response = post(client, prescription_event("approved", occurred_at=at(5)))
    assert response.json()["stale"] == 1
    snapshot = client.get("/api/patients/p-1/status", headers=AUTH).json()
    assert snapshot["prescriptions"][0]["status"] == "shipped"
    with database.session() as session:
        kinds = session.scalars(select(TimelineEntry.kind).order_by(TimelineEntry.id)).all()
    assert kinds == ["state_change", "state_change", "stale_event"]


@on_both_databases
def test_batch_is_applied_in_time_order_whatever_order_it_arrives_in(client):
    batch = [
        prescription_event("shipped", occurred_at=at(30)),
        patient_event(occurred_at=at(-60)),
        prescription_event("approved", occurred_at=at(10)),
    ]
    body = post(client, {"events": batch}).json()
    assert body["applied"] == 3 and body["stale"] == 0
    snapshot = client.get("/api/patients/p-1/status", headers=AUTH).json()
    assert snapshot["prescriptions"][0]["status"] == "shipped"


@on_both_databases
def test_event_for_unknown_patient_takes_effect_when_patient_arrives(client):
    early = post(client, prescription_event("sent_to_pharmacy", patient_id="p-late"))
    assert early.json()["pending"] == 1
    missing = client.get("/api/patients/p-late/status", headers=AUTH)
    assert missing.status_code == 404
    assert "p-late" in missing.json()["detail"]
    post(client, patient_event("p-late", occurred_at=at(60)))
    snapshot = client.get("/api/patients/p-late/status", headers=AUTH).json()
    assert snapshot["prescriptions"][0]["prescription_id"] == "rx-1"
    assert snapshot["prescriptions"][0]["status"] == "sent_to_pharmacy"


@on_both_databases
def test_one_bad_event_refuses_the_whole_batch(client, database):
    batch = [patient_event(), prescription_event(status="teleported"), payment_event()]
    response = post(client, {"events": batch})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors == [
        {
            "index": 1,
            "id": batch[1]["id"],
            "field": "data.status",
            "message": errors[0]["message"],
        }
    ]
    assert "awaiting_provider" in errors[0]["message"]
    assert count(database, StoredEvent) == 0
    assert count(database, Patient) == 0


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (event("refund.issued"), "type", "unknown event type"),
        ({"id": "x", "occurred_at": at(), "data": {}}, "type", "missing"),
        (patient_event(date_of_birth="03/14/1985"), "data.date_of_birth", "YYYY-MM-DD"),
        (patient_event(timezone="Eastern"), "data.timezone", "IANA"),
        (patient_event(phone="call me"), "data.phone", "not a valid phone"),
        (patient_event(sms_consent="yes"), "data.sms_consent", "boolean"),
        (payment_event(amount_cents="299.00"), "data.amount_cents", "integer"),
        (prescription_event(occurred_at="2026-11-20T14:00:00"), "occurred_at", "offset"),
        (prescription_event(occurred_at="yesterday"), "occurred_at", "RFC 3339"),
        (
            {**prescription_event(), "data": {"patient_id": "p-1"}},
            "data.prescription_id",
            "missing",
        ),
        ({**patient_event(), "extra": 1}, "extra", "inside data"),
    ],
)
def test_malformed_event_is_refused_with_the_field_named(client, database, body, field, words):
    response = post(client, body)
    assert response.status_code == 422
    problems = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert field in problems
    assert words.lower() in problems[field].lower()
    assert count(database, StoredEvent) == 0


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"events": {}}', "list"),
        (b'{"events": []}', "empty"),
    ],
)
def test_unparseable_body_is_a_4xx_naming_the_problem(client, raw, words):
    response = client.post(
        "/events", content=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    assert words.lower() in str(response.json()).lower()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": API_KEY},
        {"Authorization": "Basic x"},
    ],
)
def test_missing_or_wrong_key_is_401_and_nothing_stored(client, database, headers):
    response = post(client, patient_event(), headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"]
    assert count(database, StoredEvent) == 0
    assert client.get("/api/patients/p-1/status", headers=headers).status_code == 401


def test_without_api_key_configured_the_api_refuses_every_call(settings, database):
    settings = settings.model_copy(update={"api_key": None})
    with TestClient(create_app(settings, database)) as client:
        response = post(client, patient_event())
    assert response.status_code == 401
    assert "API_KEY" in response.json()["detail"]


def test_event_schema_is_served_with_every_type(client):
    schema = client.get("/events/schema").json()
    text = str(schema)
    for event_type in [
        "patient.updated", "prescription.updated", "shipment.updated", "refill.updated",
        "payment.updated", "subscription.updated", "appointment.updated", "task.updated",
    ]:  # fmt: skip
        assert event_type in text


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "down": [], "checks": {"database": "ok"}}


def test_phone_is_normalised_to_e164(client):
    post(client, patient_event(phone="(555) 010-0001"))
    snapshot = client.get("/api/patients/p-1/status", headers=AUTH).json()
    assert snapshot["patient"]["phone"] == "+15550100001"
