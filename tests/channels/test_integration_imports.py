"""`patient-status import fhir|stripe`: the first load, against a fake FHIR server and a fake
Stripe API on loopback, through the real httpx and stripe clients."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from channels.cli import main
from status import clinics
from status.events.apply import apply_events
from status.events.schemas import parse_events
from status.integrations.receipts import IntegrationReceipt
from status.patients import Patient
from status.payments import Payment
from status.prescriptions import Prescription
from status.settings import get_settings
from status.subscriptions import Subscription
from tests.builders import patient_event
from tests.conftest import on_both_databases

DATA = Path(__file__).resolve().parent.parent / "data" / "integrations"
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


def run(database, *args, **env):
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, args, env={"DATABASE_URL": database.url, **env})
    finally:
        get_settings.cache_clear()


def count(database, model) -> int:
    with database.session() as session:
        return session.query(model).count()


def fhir(name: str, at: datetime, **changes) -> dict:
    body = json.loads((DATA / "fhir" / f"{name}.json").read_text())
    body["meta"] = {"versionId": "1", "lastUpdated": at.isoformat()}
    body.update(changes)
    return body


def stripe_event(name: str, created: datetime, **changes) -> dict:
    event = json.loads((DATA / "stripe" / f"{name}.json").read_text())
    event["created"] = int(created.timestamp())
    event["id"] = changes.pop("id", event["id"])
    event["data"]["object"].update(changes)
    return event


@on_both_databases
def test_import_fhir_pages_every_search_and_a_second_run_changes_nothing(database, fake_fhir):
    fake_fhir.add(fhir("patient", T0))
    fake_fhir.add(
        *(fhir("medication_request", T0 + timedelta(minutes=i), id=f"rx-{i}") for i in range(150))
    )
    fake_fhir.add(fhir("medication_request", T0 - timedelta(days=30), id="rx-old"))
    token = {"FHIR_IMPORT_TOKEN": "fhir-import-token"}
    first = run(database, "import", "fhir", "--base", fake_fhir.fhir_base,
                "--since", "2026-11-01", **token)  # fmt: skip
    assert first.exit_code == 0, first.output
    totals = json.loads(first.output)
    assert (totals["received"], totals["applied"], totals["unmapped"]) == (151, 151, 0)
    assert count(database, Patient) == 1 and count(database, Prescription) == 150
    searches = [r for r in fake_fhir.requests if r.startswith("/fhir/R4/MedicationRequest")]
    assert len(searches) == 2  # 100 per page, then the next link
    assert "_lastUpdated=ge2026-11-01" in searches[0]

    again = run(database, "import", "fhir", "--base", fake_fhir.fhir_base, **token)
    totals = json.loads(again.output)
    assert totals["duplicate_notifications"] == 151 and totals["applied"] == 1  # rx-old only
    assert count(database, Prescription) == 151


def test_import_fhir_says_why_when_the_server_refuses(database, fake_fhir):
    result = run(database, "import", "fhir", "--base", fake_fhir.fhir_base,
                 FHIR_IMPORT_TOKEN="wrong")  # fmt: skip
    assert result.exit_code != 0
    assert "GET Patient search answered 401" in result.output
    assert count(database, IntegrationReceipt) == 0


@on_both_databases
def test_import_stripe_reads_the_events_list_and_finds_customers(database, fake_stripe):
    with database.session() as session:
        apply_events(session, parse_events([patient_event("pat-maria")]))
    fake_stripe.add_customer({"id": "cus_Lookup", "object": "customer", "email": None,
                              "metadata": {"patient_id": "pat-maria"}})  # fmt: skip
    fake_stripe.add_events(
        stripe_event("subscription_updated", T0),
        stripe_event("checkout_completed", T0),  # a type we do not ask for
        stripe_event("invoice_payment_failed", T0 - timedelta(days=40)),  # before --since
    )
    for i in range(120):
        event = stripe_event("invoice_paid", T0 + timedelta(minutes=i), id=f"evt_paid_{i}",
                             customer="cus_Lookup", customer_email=None)  # fmt: skip
        event["data"]["object"]["id"] = f"in_{i}"
        fake_stripe.add_events(event)
    env = {"STRIPE_API_KEY": fake_stripe.api_key, "STRIPE_API_BASE": fake_stripe.base_url}
    result = run(database, "import", "stripe", "--since", "2026-11-01", **env)
    assert result.exit_code == 0, result.output
    totals = json.loads(result.output)
    assert (totals["received"], totals["applied"], totals["unmapped"]) == (121, 121, 0)
    assert count(database, Payment) == 120 and count(database, Subscription) == 1
    assert len(fake_stripe.requests) == 2  # 100 per page, then starting_after the last
    assert "types" in fake_stripe.requests[0] and "created" in fake_stripe.requests[0]

    again = run(database, "import", "stripe", "--since", "2026-11-01", **env)
    assert json.loads(again.output)["duplicate_notifications"] == 121


def test_import_stripe_without_a_key_says_so(database):
    result = run(database, "import", "stripe")
    assert result.exit_code != 0 and "STRIPE_API_KEY is not set" in result.output


def test_import_stripe_for_a_clinic_uses_its_own_key_and_reaches_its_own_patients(
    database, fake_stripe
):
    env = {"STRIPE_API_BASE": fake_stripe.base_url}  # no STRIPE_API_KEY: the default has none
    added = run(database, "clinic", "add", "glow", "--name", "Glow Skin",
                "--stripe-api-key", fake_stripe.api_key, "--stripe-webhook-secret", "whsec_glow",
                "--stripe-patient-match", "email", **env)  # fmt: skip
    assert added.exit_code == 0, added.output
    with database.session() as session:
        glow = clinics.require(session, "glow")
        assert (glow.stripe_webhook_secret, glow.stripe_patient_match) == ("whsec_glow", "email")
        apply_events(session, parse_events([patient_event("pat-maria")]))  # the default's Maria
        apply_events(session, parse_events([patient_event("glow-marisol", first_name="Marisol")]),
                     clinic_id=glow.id)  # fmt: skip
    fake_stripe.add_events(stripe_event("invoice_paid", T0, customer_email="maria@example.com"))

    result = run(database, "import", "stripe", "--clinic", "glow", **env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["applied"] == 1
    with database.session() as session:
        [payment] = session.query(Payment).all()
        owner = session.get(Patient, payment.patient_id)
        assert (payment.clinic_id, owner.source_id) == (glow.id, "glow-marisol")

    assert "STRIPE_API_KEY is not set" in run(database, "import", "stripe", **env).output
    unknown = run(database, "import", "stripe", "--clinic", "nowhere", **env)
    assert unknown.exit_code != 0 and "no clinic 'nowhere'" in unknown.output
    run(database, "clinic", "add", "plain", "--name", "Plain Clinic", **env)
    keyless = run(database, "import", "stripe", "--clinic", "plain", **env)
    assert "clinic 'plain' has no Stripe API key" in keyless.output  # never the environment's
    refused = run(database, "clinic", "update", "glow", "--stripe-patient-match", "fax")
    assert refused.exit_code != 0 and "STRIPE_PATIENT_MATCH must list some of" in refused.output
