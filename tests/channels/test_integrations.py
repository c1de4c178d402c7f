"""FHIR and Stripe webhooks end to end: signed real-shaped payloads in, the texts a patient gets
out at the fake Twilio, with the product's clock driven by the test."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import stripe
from fastapi.testclient import TestClient

from bot.render import short_date
from channels.app import create_app
from channels.runtime import Runtime
from channels.staff.auth import add_staff
from status import clinics
from status.appointments import Appointment
from status.clinics import DEFAULT_ID
from status.events.store import StoredEvent
from status.integrations.receipts import IntegrationReceipt
from status.patients import Patient
from status.payments import Payment
from status.prescriptions import Prescription
from status.shipments import Shipment
from status.subscriptions import Subscription
from status.tasks import Task
from tests.builders import patient_event
from tests.conftest import on_both_databases
from tests.harness import App, channel_overrides, frozen
from tests.staff.conftest import NURSE, log_in, make_staff

pytestmark = pytest.mark.clock

DATA = Path(__file__).resolve().parent.parent / "data" / "integrations"
FHIR_SECRET = "medplum-subscription-secret"
STRIPE_SECRET = "whsec_test_0123456789abcdef"
MARIA = "+15550100001"
NEW_YORK = ZoneInfo("America/New_York")
TUESDAY_10AM = datetime.fromisoformat("2026-11-24T15:00:00+00:00")


@pytest.fixture
def clock():
    with frozen(TUESDAY_10AM) as clock:
        yield clock


@pytest.fixture
def integration_settings(settings, fake_twilio, fake_telegram):
    return settings.model_copy(
        update={
            **channel_overrides(fake_twilio, fake_telegram),
            "notify_delay_seconds": 60,
            "quiet_hours": "off",
            "fhir_webhook_secret": FHIR_SECRET,
            "stripe_webhook_secret": STRIPE_SECRET,
        }
    )


@pytest.fixture
def app(integration_settings, database, clock):
    runtime = Runtime(integration_settings, database, clock=clock)
    client = TestClient(
        create_app(integration_settings, database, runtime=runtime, run_workers=False)
    )
    with client:
        yield App(client, integration_settings, database)


# --- building and sending ---------------------------------------------------------------------


def fhir(name: str, at: datetime, version: str = "1", **changes) -> dict:
    body = json.loads((DATA / "fhir" / f"{name}.json").read_text())
    body["meta"] = {"versionId": version, "lastUpdated": at.isoformat()}
    validity = body.get("dispenseRequest", {}).get("validityPeriod")
    if validity:  # valid around the test's clock, whatever the date (CI runs a year ahead)
        validity["start"] = (at - timedelta(days=6)).date().isoformat()
        validity["end"] = (at + timedelta(days=365)).date().isoformat()
    body.update(changes)
    return body


def post_fhir(app: App, body: dict, secret: str = FHIR_SECRET, clinic: str | None = None):
    raw = json.dumps(body).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return app.client.post(
        f"/integrations/fhir/{clinic}" if clinic else "/integrations/fhir",
        content=raw,
        headers={"X-Signature": signature, "Content-Type": "application/fhir+json"},
    )


def stripe_event(name: str, created: datetime, event_id: str | None = None, **changes) -> dict:
    event = json.loads((DATA / "stripe" / f"{name}.json").read_text())
    event["created"] = int(created.timestamp())
    if event_id:
        event["id"] = event_id
    event["data"]["object"].update(changes)
    return event


def post_stripe(
    app: App,
    event: dict,
    secret: str = STRIPE_SECRET,
    signed_at: datetime | None = None,
    clinic: str | None = None,
):
    raw = json.dumps(event)
    at = signed_at or app.runtime.clock()
    header = stripe.WebhookSignature.generate_signature_header(
        raw, secret, timestamp=int(at.timestamp())
    )
    path = f"/integrations/stripe/{clinic}" if clinic else "/integrations/stripe"
    return app.client.post(path, content=raw.encode(), headers={"Stripe-Signature": header})


def texts(fake_twilio) -> list[str]:
    return [m.body for m in fake_twilio.messages]


def settle(app: App, clock) -> None:
    """Past the coalescing window: every proactive message due is sent."""
    clock.advance(seconds=61)
    app.drain()


def ask(app: App, fake_twilio, text: str) -> str:
    """The patient texts; the bot's reply (verifying the date of birth first if it asks)."""
    before = len(fake_twilio.messages)
    app.sms(text, sender=MARIA)
    app.drain()
    reply = "\n".join(texts(fake_twilio)[before:])
    if "date of birth" in reply:
        before = len(fake_twilio.messages)
        app.sms("03/14/1985", sender=MARIA)
        app.drain()
        reply = "\n".join(texts(fake_twilio)[before:])
    return reply


def maria_from_fhir(app: App, clock) -> None:
    assert post_fhir(app, fhir("patient", clock.now - timedelta(minutes=20))).status_code == 200
    response = post_fhir(app, fhir("medication_request", clock.now - timedelta(minutes=15)))
    assert response.status_code == 200, response.text


# --- FHIR ------------------------------------------------------------------------------------


@on_both_databases
def test_dispense_in_progress_then_completed_with_tracking_texts_the_patient(
    app, clock, fake_twilio
):
    maria_from_fhir(app, clock)
    [patient] = app.rows(Patient)
    assert (patient.source_id, patient.phone, patient.email) == (
        "pat-maria",
        MARIA,
        "maria@example.com",
    )
    [rx] = app.rows(Prescription)
    assert (rx.status, rx.refills_remaining, rx.pharmacy_name) == (
        "approved",
        2,
        "Harbor Mail Pharmacy",
    )
    settle(app, clock)
    already = len(fake_twilio.messages)

    dispense = fhir("medication_dispense", clock.now)
    response = post_fhir(app, dispense)
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 1
    [rx] = app.rows(Prescription)
    assert rx.status == "processing"

    clock.advance(minutes=30)
    completed = fhir(
        "medication_dispense",
        clock.now,
        version="2",
        status="completed",
        whenHandedOver=clock.now.isoformat(),
        note=[{"text": "Shipped with UPS, tracking number 1Z999AA10123456784 "
                       "https://www.ups.com/track?tracknum=1Z999AA10123456784"}],
    )  # fmt: skip
    assert post_fhir(app, completed).status_code == 200
    settle(app, clock)
    [sms] = texts(fake_twilio)[already:]
    assert "shipped with UPS" in sms
    assert "https://www.ups.com/track?tracknum=1Z999AA10123456784" in sms
    assert "Semaglutide" not in sms
    [shipment] = app.rows(Shipment)
    assert (shipment.status, shipment.tracking_number) == ("in_transit", "1Z999AA10123456784")

    reply = ask(app, fake_twilio, "where is my prescription")
    assert "shipped" in reply and "UPS" in reply and "1Z999AA10123456784" in reply


@on_both_databases
def test_redelivered_and_out_of_order_fhir_notifications_change_nothing(app, clock, fake_twilio):
    maria_from_fhir(app, clock)
    note = [{"text": "UPS tracking 1Z999AA10123456784"}]
    later = clock.now + timedelta(minutes=5)
    newer = fhir("medication_dispense", later, version="2", status="completed", note=note)
    older = fhir("medication_dispense", clock.now, version="1")
    assert post_fhir(app, newer).status_code == 200
    events_before = app.count(StoredEvent)

    again = post_fhir(app, newer)
    assert again.status_code == 200
    assert again.json()["duplicate_notifications"] == 1
    assert app.count(StoredEvent) == events_before

    late = post_fhir(app, older)
    assert late.status_code == 200 and late.json()["stale"] == 1
    [rx] = app.rows(Prescription)
    assert rx.status == "shipped"  # the in-progress version, older, did not move it back
    assert app.rows(Shipment)[0].status == "in_transit"


@on_both_databases
def test_task_on_hold_tells_the_patient_what_they_need_to_do(app, clock, fake_twilio):
    maria_from_fhir(app, clock)
    settle(app, clock)
    already = len(fake_twilio.messages)
    task = fhir("task_on_hold", clock.now)
    task["restriction"]["period"]["end"] = (clock.now + timedelta(days=4)).isoformat()
    response = post_fhir(app, task)
    assert response.status_code == 200, response.text
    [rx] = app.rows(Prescription)
    assert (rx.status, rx.blocked_reason) == ("blocked", "waiting for the patient's photo ID")
    [open_task] = app.rows(Task)
    assert (open_task.status, open_task.url) == ("open", "https://clinic.example/upload/abc123")

    settle(app, clock)
    [sms] = texts(fake_twilio)[already:]
    assert "Please upload a photo ID: https://clinic.example/upload/abc123" in sms

    reply = ask(app, fake_twilio, "what do i need to do next")
    assert "please upload a photo ID here: https://clinic.example/upload/abc123" in reply
    assert "on hold until then" in reply


def test_appointment_invoice_and_payment_reconciliation_map_onto_our_events(app, clock):
    maria_from_fhir(app, clock)
    appointment = fhir("appointment", clock.now)
    appointment["start"] = (clock.now + timedelta(days=6)).isoformat()
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {"resource": appointment},
            {"resource": fhir("invoice", clock.now + timedelta(minutes=1))},
            {"resource": fhir("payment_reconciliation", clock.now + timedelta(minutes=2))},
        ],
    }
    response = post_fhir(app, bundle)
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 3
    [appt] = app.rows(Appointment)
    assert (appt.status, appt.provider_name, appt.visit_type, appt.join_url) == (
        "confirmed",
        "Dr. Chen",
        "Follow-up visit",
        "https://video.example/join/xyz",
    )
    [payment] = app.rows(Payment)
    assert (payment.source_id, payment.amount_cents, payment.status) == (
        "inv-7001",
        8000,
        "succeeded",
    )


def test_a_bundle_with_one_malformed_entry_is_refused_whole(app, clock):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": fhir("patient", clock.now)},
            {"resource": fhir("medication_dispense", clock.now, whenHandedOver="yesterday")},
        ],
    }
    response = post_fhir(app, bundle)
    assert response.status_code == 400
    assert "whenHandedOver" in response.json()["detail"]
    assert app.count(Patient) == 0 and app.count(IntegrationReceipt) == 0


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"resourceType": "Spaceship", "id": "x"}, "'Spaceship' is not a FHIR R4 resource type"),
        ({"id": "x"}, "resourceType is missing"),
        ({"resourceType": "Patient", "id": "p", "birthDate": "14/03/1985",
          "meta": {"lastUpdated": "2026-11-24T14:00:00Z"}}, "birthDate"),
        ({"resourceType": "Task", "id": "t", "status": "on-hold", "intent": "order"},
         "meta.lastUpdated is missing"),
    ],
)  # fmt: skip
def test_malformed_fhir_is_400_naming_the_problem(app, body, problem):
    response = post_fhir(app, body)
    assert response.status_code == 400
    assert problem in response.json()["detail"]
    assert app.count(IntegrationReceipt) == 0


@pytest.mark.parametrize("birth_date", ["1980", "1980-05"])
def test_a_patient_with_a_partial_birth_date_is_kept_unmapped_never_5xx(app, clock, birth_date):
    """FHIR allows a year, or a year and month, for birthDate; we verify patients by the whole
    date, so such a Patient is kept and named to staff, and a Bundle around it is not refused."""
    patient = fhir("patient", clock.now, birthDate=birth_date)
    response = post_fhir(app, patient)
    assert response.status_code == 200, response.text
    [unmapped] = response.json()["unmapped"]
    assert f"birthDate {birth_date!r} is not a whole date" in unmapped["reason"]
    assert app.count(Patient) == 0
    request = fhir("medication_request", clock.now)
    next_year = str((clock.now + timedelta(days=400)).year)  # a partial dateTime: a year
    request["dispenseRequest"]["validityPeriod"]["end"] = next_year
    bundle = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{"resource": fhir("patient", clock.now, id="other", birthDate=birth_date)},
                  {"resource": request}],
    }  # fmt: skip
    response = post_fhir(app, bundle)
    assert response.status_code == 200, response.text


def test_unmappable_resource_is_kept_answered_200_and_shown_to_staff(app, clock, database):
    response = post_fhir(app, fhir("observation", clock.now))
    assert response.status_code == 200
    [unmapped] = response.json()["unmapped"]
    assert unmapped["id"] == "Observation/bmi"
    assert "Observation is not a resource we map" in unmapped["reason"]
    staff_task = fhir("task_on_hold", clock.now, id="staff-task", status="requested",
                      owner={"reference": "Practitioner/nurse-1"})  # fmt: skip
    post_fhir(app, fhir("patient", clock.now))
    response = post_fhir(app, staff_task)
    assert "owned by a Practitioner" in response.json()["unmapped"][0]["reason"]
    assert app.count(Task) == 0

    with database.session() as session:
        make_staff(session, NURSE)
    console = TestClient(app.client.app, base_url="https://testserver")  # secure cookies
    log_in(console, NURSE)
    page = console.get("/staff/ops")
    assert page.status_code == 200
    assert "Integration notifications we could not use" in page.text
    assert "Observation/bmi" in page.text and "not a resource we map" in page.text
    assert "Task/staff-task" in page.text


@on_both_databases
def test_forged_fhir_signature_is_refused_and_nothing_stored(app, clock):
    body = fhir("patient", clock.now)
    forged = post_fhir(app, body, secret="not-the-secret")
    unsigned = app.client.post("/integrations/fhir", json=body)
    assert forged.status_code == 401 and "does not match" in forged.json()["detail"]
    assert unsigned.status_code == 401 and "X-Signature" in unsigned.json()["detail"]
    assert app.count(Patient) == 0 and app.count(IntegrationReceipt) == 0


def test_a_bearer_token_is_accepted_when_configured(app, clock):
    app.client.app.state.settings = app.settings.model_copy(
        update={"fhir_webhook_secret": None, "fhir_bearer_token": "fhir-token"}
    )
    body = fhir("patient", clock.now)
    wrong = app.client.post("/integrations/fhir", json=body,
                            headers={"Authorization": "Bearer nope"})  # fmt: skip
    assert wrong.status_code == 401 and "wrong bearer token" in wrong.json()["detail"]
    assert app.count(Patient) == 0
    right = app.client.post("/integrations/fhir", json=body,
                            headers={"Authorization": "Bearer fhir-token"})  # fmt: skip
    assert right.status_code == 200 and app.count(Patient) == 1


def test_with_a_patient_identifier_system_our_id_is_the_identifier(app, clock):
    app.client.app.state.settings = app.settings.model_copy(
        update={"fhir_patient_id_system": "urn:oid:1.2.36.146.595.217.0.1"}
    )
    early = post_fhir(app, fhir("medication_request", clock.now - timedelta(minutes=5)))
    assert "send that Patient first" in early.json()["unmapped"][0]["reason"]
    post_fhir(app, fhir("patient", clock.now))
    post_fhir(app, fhir("medication_request", clock.now, version="2"))
    [patient] = app.rows(Patient)
    [rx] = app.rows(Prescription)
    assert patient.source_id == "MRN-12345" and rx.patient_id == patient.id


# --- Stripe ----------------------------------------------------------------------------------


def maria_by_events(app: App, clock) -> None:
    app.events(patient_event("pat-maria", occurred_at=(clock.now - timedelta(hours=1)).isoformat()))


@on_both_databases
def test_invoice_payment_failed_is_explained_with_the_link_and_retry_date(app, clock, fake_twilio):
    maria_by_events(app, clock)
    retry = clock.now + timedelta(days=3)
    event = stripe_event("invoice_payment_failed", clock.now,
                         next_payment_attempt=int(retry.timestamp()))  # fmt: skip
    response = post_stripe(app, event)
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 1
    [payment] = app.rows(Payment)
    assert (payment.source_id, payment.status, payment.amount_cents) == (
        "in_1QfailInvoice0001",
        "failed",
        29900,
    )
    link = "https://invoice.stripe.com/i/acct_1Harbor/test_YWNjdF8xSGFyYm9y"
    retry_day = short_date(retry, "en", "America/New_York")

    settle(app, clock)
    [sms] = texts(fake_twilio)
    assert "$299.00 didn't go through" in sms and link in sms and retry_day in sms

    reply = ask(app, fake_twilio, "my card got declined??")
    assert "$299.00 didn't go through" in reply
    assert f"Update your card securely here: {link}" in reply
    assert f"We'll try again {retry_day}" in reply
    assert "pay.example" not in reply  # the clinic's generic link gives way to the invoice's


@on_both_databases
def test_stripe_redelivery_and_reordering_change_nothing(app, clock, fake_twilio):
    maria_by_events(app, clock)
    paid = stripe_event("invoice_paid", clock.now + timedelta(minutes=10))
    failed = stripe_event("invoice_payment_failed", clock.now)
    assert post_stripe(app, paid).json()["applied"] == 1
    again = post_stripe(app, paid)
    assert again.status_code == 200 and again.json()["duplicate_notifications"] == 1
    late = post_stripe(app, failed)
    assert late.status_code == 200 and late.json()["stale"] == 1
    [payment] = app.rows(Payment)
    assert payment.status == "succeeded"
    settle(app, clock)
    assert not any("didn't go through" in text for text in texts(fake_twilio))


@pytest.mark.parametrize("intent_first", [False, True])
def test_the_two_failure_events_of_one_invoice_keep_each_others_facts(app, clock, intent_first):
    """Stripe sends invoice.payment_failed and payment_intent.payment_failed for one failed
    invoice, in either order: the card's reason (the intent's) and the retry date and link
    (the invoice's) are both kept."""
    maria_by_events(app, clock)
    retry = clock.now + timedelta(days=4)
    invoice = stripe_event("invoice_payment_failed", clock.now, event_id="evt_inv_failed",
                           next_payment_attempt=int(retry.timestamp()))  # fmt: skip
    intent = stripe_event("payment_intent_failed", clock.now, event_id="evt_pi_failed",
                          invoice=invoice["data"]["object"]["id"],
                          receipt_email="maria@example.com")  # fmt: skip
    first, second = (intent, invoice) if intent_first else (invoice, intent)
    second["created"] += 1
    for event in (first, second):
        response = post_stripe(app, event)
        assert response.status_code == 200 and response.json()["applied"] == 1, response.text
    [payment] = app.rows(Payment)
    assert (payment.source_id, payment.status) == ("in_1QfailInvoice0001", "failed")
    assert payment.failure_reason == "Your card has expired."
    assert payment.next_retry_at is not None
    assert abs((payment.next_retry_at - retry).total_seconds()) < 1
    assert payment.payment_url.startswith("https://invoice.stripe.com/")


def test_subscription_and_customer_metadata_name_the_patient(app, clock):
    maria_by_events(app, clock)
    post_stripe(app, stripe_event("customer_created", clock.now - timedelta(minutes=5)))
    period_end = int((clock.now + timedelta(days=20)).timestamp())
    sub = stripe_event("subscription_updated", clock.now, metadata={},
                       cancel_at_period_end=True, current_period_end=period_end)  # fmt: skip
    assert post_stripe(app, sub).json()["applied"] == 1
    [subscription] = app.rows(Subscription)
    assert (subscription.plan, subscription.status, subscription.auto_renew) == (
        "Weight care monthly",
        "past_due",
        False,
    )
    assert subscription.amount_cents == 29900
    deleted = stripe_event("subscription_updated", clock.now + timedelta(minutes=1),
                           event_id="evt_deleted")  # fmt: skip
    deleted["type"] = "customer.subscription.deleted"
    post_stripe(app, deleted)
    assert app.rows(Subscription)[0].status == "cancelled"


def test_payment_intent_failure_and_refund_match_the_patient_by_email(app, clock):
    maria_by_events(app, clock)
    failed = stripe_event("payment_intent_failed", clock.now, receipt_email="MARIA@example.com")
    assert post_stripe(app, failed).json()["applied"] == 1
    [payment] = app.rows(Payment)
    assert (payment.status, payment.failure_reason) == ("failed", "Your card has expired.")
    refunded = stripe_event("charge_refunded", clock.now + timedelta(minutes=5))
    assert post_stripe(app, refunded).json()["applied"] == 1
    [payment] = app.rows(Payment)
    assert (payment.source_id, payment.status) == ("pi_1QoneOff0001", "refunded")


def test_a_customer_we_cannot_match_and_an_event_we_do_not_use_are_kept_unmapped(app, clock):
    nobody = stripe_event("payment_intent_failed", clock.now, customer="cus_Unknown")
    response = post_stripe(app, nobody)
    assert response.status_code == 200
    assert "no patient for this Stripe customer" in response.json()["unmapped"][0]["reason"]
    other = post_stripe(app, stripe_event("checkout_completed", clock.now))
    assert "'checkout.session.completed' is not one we use" in other.json()["unmapped"][0]["reason"]
    assert [r.outcome for r in app.rows(IntegrationReceipt)] == ["unmapped", "unmapped"]
    assert app.count(Payment) == 0


@on_both_databases
def test_forged_or_replayed_stripe_events_are_refused_and_nothing_stored(app, clock):
    maria_by_events(app, clock)
    event = stripe_event("invoice_payment_failed", clock.now)
    forged = post_stripe(app, event, secret="whsec_wrong")
    replayed = post_stripe(app, event, signed_at=clock.now - timedelta(minutes=6))
    unsigned = app.client.post("/integrations/stripe", json=event)
    tampered_raw = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        tampered_raw, STRIPE_SECRET, timestamp=int(clock.now.timestamp())
    )
    changed = copy.deepcopy(event)
    changed["data"]["object"]["amount_due"] = 1
    tampered = app.client.post("/integrations/stripe", content=json.dumps(changed).encode(),
                               headers={"Stripe-Signature": header})  # fmt: skip
    for response in (forged, replayed, unsigned, tampered):
        assert response.status_code == 401, response.text
    assert "5 minutes" in replayed.json()["detail"]
    assert app.count(Payment) == 0 and app.count(IntegrationReceipt) == 0
    # a signature dated ahead of our clock would be replayable until then
    ahead = post_stripe(app, event, signed_at=clock.now + timedelta(minutes=6))
    assert ahead.status_code == 401 and "ahead" in ahead.json()["detail"]
    assert app.count(Payment) == 0 and app.count(IntegrationReceipt) == 0
    # signed four minutes ago (by the product's clock, frozen here): still accepted
    assert post_stripe(app, event, signed_at=clock.now - timedelta(minutes=4)).status_code == 200


def test_without_secrets_both_endpoints_refuse(app, clock):
    app.client.app.state.settings = app.settings.model_copy(
        update={"fhir_webhook_secret": None, "stripe_webhook_secret": None}
    )
    fhir_response = post_fhir(app, fhir("patient", clock.now))
    stripe_response = post_stripe(app, stripe_event("invoice_paid", clock.now))
    assert fhir_response.status_code == 401 and "FHIR_WEBHOOK_SECRET" in fhir_response.text
    assert stripe_response.status_code == 401 and "STRIPE_WEBHOOK_SECRET" in stripe_response.text


HOSTILE_FHIR = [
    b"[]",
    b'"Patient"',
    b"{not json",
    b"\xff\xfe",
    json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": "everything"}).encode(),
    json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": 1}]}).encode(),
    json.dumps({"resourceType": "Bundle", "type": "document", "entry": []}).encode(),
    json.dumps({"resourceType": "Bundle", "type": "history",
                "entry": [{"resource": {"id": "x"}}]}).encode(),
    json.dumps({"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Nope"}],
                "meta": {"lastUpdated": "2026-11-24T14:00:00Z"}}).encode(),
    json.dumps({"resourceType": "Task", "id": "t" * 300, "status": "on-hold", "intent": "order",
                "meta": {"lastUpdated": "2026-11-24T14:00:00Z"}}).encode(),
    b"[" * 100 + b"]" * 100,
]  # fmt: skip


@pytest.mark.parametrize("raw", HOSTILE_FHIR)
def test_hostile_fhir_bodies_are_4xx_never_5xx(app, raw):
    signature = hmac.new(FHIR_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    response = app.client.post(
        "/integrations/fhir", content=raw, headers={"X-Signature": signature}
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:  # kept, but with the reason it was not used
        assert response.json()["unmapped"], response.text
    assert app.count(Patient) == 0 and app.count(Task) == 0


HOSTILE_STRIPE = [
    {"id": "evt_1", "type": "invoice.paid", "created": "yesterday", "data": {"object": {}}},
    {"id": "evt_2", "type": "invoice.paid", "created": 1795618800, "data": {"object": []}},
    {"id": 5, "type": "invoice.paid", "created": 1795618800, "data": {"object": {}}},
    {"id": "evt_3", "type": "invoice.paid", "created": 1795618800, "data": {"object": {}}},
    {"id": "evt_4", "type": "customer.subscription.updated", "created": 1795618800,
     "data": {"object": {"id": "sub_1", "metadata": {"patient_id": "p" * 500}, "items": 3}}},
    [],
    # numbers beyond the years a date holds, and objects where Stripe sends other shapes
    {"id": "evt_5", "type": "invoice.paid", "created": 10**15, "data": {"object": {}}},
    {"id": "evt_6", "type": "invoice.paid", "created": -(10**12), "data": {"object": {}}},
    {"id": "evt_7", "type": "invoice.payment_failed", "created": 1795618800,
     "data": {"object": {"id": "in_7", "metadata": {"patient_id": "p1"},
                         "next_payment_attempt": 10**14, "amount_remaining": 100}}},
    {"id": "evt_8", "type": "invoice.paid", "created": 1795618800,
     "data": {"object": {"id": "in_8", "metadata": ["p1"]}}},
    {"id": "evt_9", "type": "invoice.paid", "created": 1795618800,
     "data": {"object": {"id": "in_9", "metadata": {"patient_id": "p1"}, "lines": {"data": "x"}}}},
    {"id": "evt_10", "type": "charge.refunded", "created": 1795618800,
     "data": {"object": {"metadata": {"patient_id": "p1"}, "amount_refunded": 100}}},
    {"id": "evt_11", "type": "payment_intent.payment_failed", "created": 1795618800,
     "data": {"object": {"metadata": {"patient_id": "p1"}, "last_payment_error": "declined"}}},
    {"id": "evt_12", "type": "invoice.paid", "created": 1795618800,
     "data": {"object": {"id": "in_12", "metadata": {"patient_id": "p1"}, "description": 7}}},
]  # fmt: skip


@pytest.mark.parametrize("event", HOSTILE_STRIPE)
def test_hostile_stripe_events_are_4xx_or_kept_never_5xx(app, clock, event):
    maria_by_events(app, clock)  # p1: the patient the events name, so their objects are read
    response = post_stripe(app, event)
    assert response.status_code in (200, 400), response.text
    assert app.count(Payment) == 0 and app.count(Subscription) == 0


# --- per clinic: /integrations/{stripe|fhir}/{clinic_slug} with that clinic's own secrets ------

GLOW_STRIPE_SECRET = "whsec_glow_fedcba9876543210"
GLOW_FHIR_SECRET = "glow-medplum-subscription-secret"
GLOW_NUMBER = "+15550109100"
GLOW_AGENT = ("gia@glow.example", "Gia Glow", "agent", "glow-password")
MRN_SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"  # the identifier system in fhir/patient.json


@pytest.fixture
def glow(app):
    """A second clinic with its own Stripe and FHIR secrets, its own agent, and its own patient
    Marisol, who shares Maria's phone and email (a different person at another brand)."""
    with app.db.session() as session:
        clinic = clinics.add(
            session, "glow", "Glow Skin", twilio_from_numbers=[GLOW_NUMBER],
            stripe_webhook_secret=GLOW_STRIPE_SECRET, fhir_webhook_secret=GLOW_FHIR_SECRET,
            fhir_patient_id_system=MRN_SYSTEM,
        )  # fmt: skip
        clinic_id = clinic.id
        key = clinics.rotate_key(session, clinic)
        add_staff(session, *GLOW_AGENT, clinic=clinic)
    an_hour_ago = (TUESDAY_10AM - timedelta(hours=1)).isoformat()
    marisol = patient_event(
        "glow-marisol", first_name="Marisol", last_name="Vega", occurred_at=an_hour_ago
    )
    response = app.client.post("/events", json=marisol, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.text
    return clinic_id


def payments_by_owner(app: App) -> list[tuple[int, str, str]]:
    """(clinic id, patient id, payment id) of every payment stored."""
    with app.db.read_session() as session:
        return sorted(
            (payment.clinic_id, session.get(Patient, payment.patient_id).source_id,
             payment.source_id)
            for payment in session.query(Payment)
        )  # fmt: skip


@on_both_databases
def test_a_stripe_event_signed_for_a_clinic_reaches_its_patient_not_anothers_with_that_email(
    app, clock, fake_twilio, glow
):
    maria_by_events(app, clock)  # the default clinic's Maria: the same email as Glow's Marisol
    event = stripe_event("payment_intent_failed", clock.now, receipt_email="maria@example.com")
    response = post_stripe(app, event, secret=GLOW_STRIPE_SECRET, clinic="glow")
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 1
    assert payments_by_owner(app) == [(glow, "glow-marisol", "pi_1QoneOff0001")]
    [receipt] = app.rows(IntegrationReceipt)
    assert (receipt.clinic_id, receipt.key) == (glow, "evt_1QpiFailed0001")

    settle(app, clock)
    glow_texts = [m.body for m in fake_twilio.messages if m.from_ == GLOW_NUMBER]
    assert any("$80.00 didn't go through" in text for text in glow_texts), glow_texts
    others = [m.body for m in fake_twilio.messages if m.from_ != GLOW_NUMBER]
    assert not any("didn't go through" in text for text in others), others

    # The same Stripe ids at the default clinic's endpoint are that clinic's own, not a repeat.
    again = post_stripe(app, event)
    assert again.status_code == 200 and again.json()["applied"] == 1
    assert payments_by_owner(app) == [
        (DEFAULT_ID, "pat-maria", "pi_1QoneOff0001"), (glow, "glow-marisol", "pi_1QoneOff0001")
    ]  # fmt: skip


@on_both_databases
def test_one_clinics_secret_on_anothers_path_is_refused_and_nothing_stored(app, clock, glow):
    maria_by_events(app, clock)
    event = stripe_event("payment_intent_failed", clock.now, receipt_email="maria@example.com")
    on_glow = post_stripe(app, event, secret=STRIPE_SECRET, clinic="glow")
    assert on_glow.status_code == 401
    assert "Stripe-Signature refused" in on_glow.json()["detail"]
    on_default = post_stripe(app, event, secret=GLOW_STRIPE_SECRET)
    assert on_default.status_code == 401
    fhir_on_glow = post_fhir(app, fhir("patient", clock.now), secret=FHIR_SECRET, clinic="glow")
    assert fhir_on_glow.status_code == 401
    assert "X-Signature does not match" in fhir_on_glow.json()["detail"]
    assert app.count(Payment) == 0 and app.count(IntegrationReceipt) == 0
    assert app.count(Patient) == 2  # Maria and Marisol, from /events
    assert app.count(StoredEvent, StoredEvent.type == "payment.updated") == 0


def test_a_clinic_without_its_own_secret_never_borrows_the_environments(app, clock):
    with app.db.session() as session:
        clinics.add(session, "plain", "Plain Clinic")
    stripe_refused = post_stripe(app, stripe_event("invoice_paid", clock.now), clinic="plain")
    assert stripe_refused.status_code == 401
    assert stripe_refused.json()["detail"] == (
        "clinic 'plain' has no stripe webhook secret (patient-status clinic update plain "
        "--stripe-webhook-secret), so /integrations/stripe/plain refuses every call"
    )
    fhir_refused = post_fhir(app, fhir("patient", clock.now), clinic="plain")
    assert fhir_refused.status_code == 401 and "--fhir-webhook-secret" in fhir_refused.text
    assert app.count(Patient) == 0 and app.count(IntegrationReceipt) == 0


def test_an_unknown_clinic_slug_is_404_and_nothing_stored(app, clock):
    stripe_missing = post_stripe(app, stripe_event("invoice_paid", clock.now), clinic="nowhere")
    fhir_missing = post_fhir(app, fhir("patient", clock.now), clinic="nowhere")
    for response in (stripe_missing, fhir_missing):
        assert response.status_code == 404
        assert response.json()["detail"] == "no clinic with slug 'nowhere'"
    assert app.count(Patient) == 0 and app.count(IntegrationReceipt) == 0


def test_a_fhir_patient_on_a_clinics_path_is_that_clinics_with_its_identifier_system(
    app, clock, glow
):
    response = post_fhir(app, fhir("patient", clock.now), secret=GLOW_FHIR_SECRET, clinic="glow")
    assert response.status_code == 200 and response.json()["applied"] == 1, response.text
    post_fhir(app, fhir("medication_request", clock.now), secret=GLOW_FHIR_SECRET, clinic="glow")
    [patient] = app.rows(Patient, Patient.source_id == "MRN-12345")  # Glow's patient id system
    [rx] = app.rows(Prescription)
    assert (patient.clinic_id, rx.clinic_id, rx.patient_id) == (glow, glow, patient.id)
    assert app.count(Patient, Patient.clinic_id == DEFAULT_ID) == 0


def test_the_ops_page_lists_only_the_clinics_own_unmapped_notifications(app, clock, glow):
    post_fhir(app, fhir("observation", clock.now))  # the default clinic's
    checkout = stripe_event("checkout_completed", clock.now)
    response = post_stripe(app, checkout, secret=GLOW_STRIPE_SECRET, clinic="glow")
    assert response.json()["unmapped"], response.text
    with app.db.session() as session:
        make_staff(session, NURSE)

    nurse = TestClient(app.client.app, base_url="https://testserver")
    log_in(nurse, NURSE)
    page = nurse.get("/staff/ops").text
    assert "Observation/bmi" in page and checkout["data"]["object"]["id"] not in page

    gia = TestClient(app.client.app, base_url="https://testserver")
    log_in(gia, GLOW_AGENT)
    page = gia.get("/staff/ops").text
    assert checkout["data"]["object"]["id"] in page and "is not one we use" in page
    assert "Observation/bmi" not in page
