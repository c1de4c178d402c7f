"""The app wired to the fake providers, with demo patients and staff logins, for console and
hand-off API tests (browser tests build their own long-lived server in their module)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from bot import handoffs
from bot.handoffs import Handoff
from channels.app import create_app
from channels.staff.auth import add_staff
from status import demo, patients
from status.clinics import DEFAULT_ID
from tests.channels.conftest import TELEGRAM_SECRET, TWILIO_NUMBER, App

API_HEADERS = {"Authorization": "Bearer test-api-key"}
NURSE = ("nurse@demo.clinic", "Demo Nurse", "admin", "demo-password")
AGENT = ("agent@demo.clinic", "Alex Agent", "agent", "agent-password")
MARIA, JAMES, AISHA = "+15550100001", "+15550100002", "+15550100003"


def make_staff(session, staff: tuple[str, str, str, str]):
    email, name, role, password = staff
    return add_staff(session, email, name, role, password)


@pytest.fixture
def staff_settings(settings, fake_twilio, fake_telegram):
    return settings.model_copy(
        update={
            **fake_twilio.settings_overrides(),
            **fake_telegram.settings_overrides(),
            "twilio_from_number": TWILIO_NUMBER,
            "telegram_webhook_secret": TELEGRAM_SECRET,
            "twilio_messages_per_second": 0,
            "sms_keyword_replies": "app",
        }
    )


@pytest.fixture
def app(staff_settings, database):
    """Demo clinic, an admin and an agent; the client speaks https like the public URL."""
    with database.session() as session:
        demo.seed(session)
        make_staff(session, NURSE)
        make_staff(session, AGENT)
    client = TestClient(
        create_app(staff_settings, database, run_workers=False), base_url="https://testserver"
    )
    with client:
        yield App(client, staff_settings, database)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def log_in(client: TestClient, staff: tuple[str, str, str, str] = NURSE) -> str:
    """Log in through the form; returns the session's CSRF token."""
    token = csrf_of(client.get("/staff/login").text)
    response = client.post(
        "/staff/login",
        data={"email": staff[0], "password": staff[3], "csrf_token": token, "next": "/staff"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/staff").text)


def open_handoff(app: App, phone: str = MARIA, text: str = "can I talk to a person") -> Handoff:
    """The patient asks for a person by SMS; the hand-off it opened."""
    assert app.sms(text, sender=phone).status_code == 200
    with app.db.session() as session:
        [patient] = patients.by_phone(session, DEFAULT_ID, phone)
        handoff = handoffs.open_for_patient(session, patient.id)
    assert handoff is not None, f"{text!r} opened no hand-off"
    return handoff
