"""The status page and caregivers with two clinics in one deployment: a clinic's key makes and
revokes links for its own patients only, a page wears its patient's clinic (name, colours, logo,
phone), and a caregiver belongs to one clinic: told from its number, known only at its number
(the real twilio client against the fake Twilio server)."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from channels.app import create_app
from channels.runtime import Runtime
from status import clinics
from status.links import StatusLink
from tests.builders import patient_event, shipment_event
from tests.conftest import API_KEY, on_both_databases
from tests.harness import TWILIO_NUMBER, App, channel_overrides, frozen

pytestmark = pytest.mark.clock

GLOW_NUMBER = "+15550109100"
MARIA = "+15550100001"  # Harbor Health's Maria
GWEN = "+15550100002"  # Glow Skin's Gwen
ANA = "+15550100099"  # Maria's sister, her caregiver at Harbor Health
HARBOR = {"Authorization": f"Bearer {API_KEY}"}
# Tuesday 2026-11-24 15:00 UTC = 10:00 in New York.
TUESDAY_10AM = datetime.fromisoformat("2026-11-24T15:00:00+00:00")


@pytest.fixture
def clock():
    with frozen(TUESDAY_10AM) as clock:
        yield clock


@pytest.fixture
def app(settings, database, clock, fake_twilio, fake_telegram):
    settings = settings.model_copy(
        update={**channel_overrides(fake_twilio, fake_telegram), "notify_delay_seconds": 60}
    )
    runtime = Runtime(settings, database, clock=clock)
    client = TestClient(create_app(settings, database, runtime=runtime, run_workers=False))
    with client:
        app = App(client, settings, database)
        app.events(patient_event("p-1", phone=MARIA))
        yield app


@pytest.fixture
def glow(app) -> dict:
    """A second brand with its own number, look and key, and one patient: its key's headers."""
    with app.db.session() as session:
        clinic = clinics.add(
            session, "glow", "Glow Skin", twilio_from_numbers=[GLOW_NUMBER],
            display_name="Glow Skin Dermatology", brand_color="#7a2e8e",
            accent_color="#f6b8d1", logo_url="https://cdn.glow.example/logo.png",
            support_phone="+1 555 010 9101", payment_update_url="https://pay.glow.example/card",
        )  # fmt: skip
        headers = {"Authorization": f"Bearer {clinics.rotate_key(session, clinic)}"}
    response = app.client.post(
        "/events",
        json=patient_event("g-1", first_name="Gwen", phone=GWEN, date_of_birth="1990-06-01"),
        headers=headers,
    )
    assert response.status_code == 202, response.text
    return headers


def link(app, patient_id: str, headers: dict) -> str:
    response = app.client.post(f"/api/patients/{patient_id}/status-link", headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["url"].split("https://clinic.example", 1)[1]


@on_both_databases
def test_another_clinics_key_cannot_make_or_revoke_a_link_or_add_a_caregiver(app, glow):
    for method, path, body in [
        ("post", "/api/patients/p-1/status-link", None),
        ("delete", "/api/patients/p-1/status-links", None),
        ("post", "/api/patients/p-1/caregivers",
         {"name": "Ana", "relation": "sister", "phone": ANA, "topics": ["shipping"]}),
        ("get", "/api/patients/p-1/caregivers", None),
    ]:  # fmt: skip
        response = app.client.request(method, path, json=body, headers=glow)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["detail"] == "no patient with patient_id 'p-1'"
    assert app.count(StatusLink) == 0
    assert app.client.get("/api/patients/p-1/caregivers", headers=HARBOR).json() == {
        "caregivers": []
    }
    # each key works for its own patient
    assert link(app, "p-1", HARBOR).startswith("/s/")
    assert link(app, "g-1", glow).startswith("/s/")
    assert app.client.post("/api/patients/g-1/status-link", headers=HARBOR).status_code == 404


@on_both_databases
def test_the_status_page_wears_the_patients_clinic(app, glow):
    page = app.client.get(link(app, "g-1", glow))
    assert page.status_code == 200
    assert " · Glow Skin Dermatology</title>" in page.text
    assert '<p class="clinic">Glow Skin Dermatology</p>' in page.text
    assert "--brand: #7a2e8e; --accent: #f6b8d1;" in page.text
    assert '<img class="logo" src="https://cdn.glow.example/logo.png"' in page.text
    assert 'href="tel:+15550109101"' in page.text
    assert "Harbor" not in page.text
    csp = page.headers["content-security-policy"]
    assert "img-src 'self' https://cdn.glow.example;" in csp
    assert "form-action 'self' https://pay.glow.example;" in csp
    harbor = app.client.get(link(app, "p-1", HARBOR))
    assert '<p class="clinic">Harbor Health</p>' in harbor.text
    assert "Glow" not in harbor.text and "<img" not in harbor.text


@on_both_databases
def test_revoking_by_api_closes_every_working_link_of_the_patient(app, glow):
    first, second = link(app, "p-1", HARBOR), link(app, "p-1", HARBOR)
    gwen = link(app, "g-1", glow)
    response = app.client.delete("/api/patients/p-1/status-links", headers=HARBOR)
    assert response.status_code == 200 and response.json() == {"revoked": 2}
    for path in (first, second):
        closed = app.client.get(path)
        assert closed.status_code == 410 and "This link was turned off" in closed.text
    assert app.client.get(gwen).status_code == 200  # Glow's patient's link is untouched
    again = app.client.delete("/api/patients/p-1/status-links", headers=HARBOR)
    assert again.json() == {"revoked": 0}


def sent(fake_twilio, to: str) -> list[tuple[str, str]]:
    return [(m.from_, m.body) for m in fake_twilio.messages if m.to == to]


@on_both_databases
def test_a_caregiver_added_at_one_clinic_is_told_from_its_number_and_known_only_there(
    app, glow, clock, fake_twilio
):
    added = app.client.post(
        "/api/patients/p-1/caregivers",
        json={"name": "Ana", "relation": "sister", "phone": ANA, "topics": ["shipping"],
              "may_ask_questions": True},
        headers=HARBOR,
    )  # fmt: skip
    assert added.status_code == 201, added.text
    now = clock.now.isoformat()
    app.events(shipment_event(occurred_at=now))
    response = app.client.post(
        "/events", json=shipment_event(shipment_id="s-g", patient_id="g-1", occurred_at=now),
        headers=glow,
    )  # fmt: skip
    assert response.status_code == 202, response.text
    clock.advance(seconds=61)
    app.drain()
    [(sender, body)] = sent(fake_twilio, ANA)  # Maria's news only: Ana is nobody at Glow
    assert sender == TWILIO_NUMBER
    assert body.startswith("Harbor Health: Update for Maria:")
    assert [s for s, _ in sent(fake_twilio, GWEN)] == [GLOW_NUMBER]

    # Ana writing to Glow's number is a stranger there; to Harbor's, Maria's caregiver.
    app.sms("where is her prescription", ANA, To=GLOW_NUMBER)
    app.sms("where is her prescription", ANA, To=TWILIO_NUMBER)
    app.drain()
    replies = sent(fake_twilio, ANA)[1:]
    glow_reply = next(body for sender, body in replies if sender == GLOW_NUMBER)
    harbor_reply = next(body for sender, body in replies if sender == TWILIO_NUMBER)
    assert "Ana" not in glow_reply and "Maria" not in glow_reply
    assert harbor_reply.startswith("Hi Ana, it's Harbor Health.")
    assert "reply with Maria's date of birth" in harbor_reply


def test_a_clinic_without_a_colour_wears_the_deployments(app, glow):
    """CLINIC_BRAND_COLOR is the look of the default clinic and of any clinic that chose none."""
    with app.db.session() as session:
        clinic = clinics.require(session, "glow")
        clinic.brand_color = None
    page = app.client.get(link(app, "g-1", glow))
    assert f"--brand: {app.settings.clinic_brand_color}; --accent: #f6b8d1;" in page.text
