"""A key or a staff member of one clinic never sees another clinic's patients or hand-offs
(404, as if they did not exist); the ops view and /metrics count per clinic."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from channels.cli import main
from channels.staff.auth import add_staff
from status import clinics, read_model
from status.clinics import DEFAULT_ID
from status.settings import get_settings
from tests.builders import patient_event, prescription_event
from tests.channels.test_observability import metric
from tests.conftest import on_both_databases
from tests.staff.conftest import AGENT, API_HEADERS, JAMES, NURSE, csrf_of, log_in, open_handoff

GLOW_NUMBER = "+15550109100"
GLOW_AGENT = ("gia@glow.example", "Gia Glow", "agent", "glow-password")
GLOW_ADMIN = ("gus@glow.example", "Gus Glow", "admin", "glow-admin-password")


@pytest.fixture
def glow(app):
    """A second clinic with its own key, number and agent, and one patient of its own."""
    with app.db.session() as session:
        clinic = clinics.add(session, "glow", "Glow Skin", twilio_from_numbers=[GLOW_NUMBER])
        key = clinics.rotate_key(session, clinic)
        add_staff(session, *GLOW_AGENT, clinic=clinic)
    headers = {"Authorization": f"Bearer {key}"}
    posted = app.client.post(
        "/events", json=patient_event("glow-1", first_name="Gwen", phone=JAMES), headers=headers
    )
    assert posted.status_code == 202, posted.text
    return headers


def test_a_clinics_key_cannot_read_or_act_on_another_clinics_handoffs(app, glow):
    handoff = open_handoff(app)  # Maria, at the default clinic
    for method, path, body in [
        ("get", f"/api/handoffs/{handoff.id}", None),
        ("post", f"/api/handoffs/{handoff.id}/reply", {"text": "hello from Glow"}),
        ("post", f"/api/handoffs/{handoff.id}/resolve", {}),
    ]:
        response = app.client.request(method, path, json=body, headers=glow)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["detail"] == f"no hand-off with id {handoff.id}"
    assert app.client.get("/api/handoffs", headers=glow).json()["count"] == 0
    mine = app.client.get("/api/handoffs", headers=API_HEADERS).json()
    assert [h["id"] for h in mine["handoffs"]] == [handoff.id]
    assert mine["handoffs"][0]["status"] == "open"  # the refused resolve changed nothing


@on_both_databases
def test_a_clinics_key_cannot_read_or_write_another_clinics_patients(app, glow):
    assert app.client.get("/api/patients/demo-james/status", headers=glow).status_code == 404
    assert app.client.get("/api/patients/glow-1/status", headers=API_HEADERS).status_code == 404
    gwen = app.client.get("/api/patients/glow-1/status", headers=glow).json()
    assert gwen["patient"]["first_name"] == "Gwen"
    # Glow writing about "demo-james" writes about a patient Glow does not have yet: it waits
    # in Glow's books; the default clinic's James is untouched.
    before = app.client.get("/api/patients/demo-james/status", headers=API_HEADERS).json()
    response = app.client.post(
        "/events",
        json=prescription_event("denied", prescription_id="rx-james-1", patient_id="demo-james"),
        headers=glow,
    )
    assert response.json()["pending"] == 1
    after = app.client.get("/api/patients/demo-james/status", headers=API_HEADERS).json()
    assert after["prescriptions"] == before["prescriptions"]
    with app.db.read_session() as session:
        assert read_model.patient_and_state(session, DEFAULT_ID, "demo-james") is not None


@on_both_databases
def test_a_rotated_clinic_key_stops_working_at_once(app, glow, database):
    assert app.client.get("/api/patients/glow-1/status", headers=glow).status_code == 200
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main, ["clinic", "key", "glow"], env={"DATABASE_URL": database.url}
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    rotated = {"Authorization": f"Bearer {result.output.splitlines()[-1]}"}
    for path in ("/api/patients/glow-1/status", "/api/patients/no-such-patient/status"):
        response = app.client.get(path, headers=glow)
        assert (response.status_code, response.json()["detail"]) == (401, "wrong API key")
    gwen = app.client.get("/api/patients/glow-1/status", headers=rotated)
    assert gwen.json()["patient"]["first_name"] == "Gwen"
    other = app.client.get("/api/patients/demo-james/status", headers=rotated)
    assert other.json()["detail"] == "no patient with patient_id 'demo-james'"


def test_staff_of_one_clinic_get_404_for_another_clinics_handoffs_and_patients(app, glow):
    handoff = open_handoff(app)
    log_in(app.client, GLOW_AGENT)
    page = app.client.get(f"/staff/handoffs/{handoff.id}")
    assert page.status_code == 404 and f"There is no hand-off #{handoff.id}." in page.text
    assert app.client.get("/staff/patients/demo-maria").status_code == 404
    assert app.client.get(f"/staff/handoffs/{handoff.id}/live").status_code == 404
    token = csrf_of(app.client.get("/staff").text)
    reply = app.client.post(
        f"/staff/handoffs/{handoff.id}/reply", data={"text": "hi", "csrf_token": token}
    )
    assert reply.status_code == 404
    queue = app.client.get("/staff").text
    assert f"/staff/handoffs/{handoff.id}" not in queue
    assert app.client.get("/staff/patients/glow-1").status_code == 200


def wrong_password(app, email: str) -> None:
    token = csrf_of(app.client.get("/staff/login").text)
    refused = app.client.post(
        "/staff/login", data={"email": email, "password": "not-the-password", "csrf_token": token}
    )
    assert refused.status_code == 401


@on_both_databases
def test_a_failed_login_is_in_the_audit_of_the_staff_members_clinic_only(app, glow):
    with app.db.session() as session:
        add_staff(session, *GLOW_ADMIN, clinic=clinics.require(session, "glow"))
    wrong_password(app, GLOW_AGENT[0])
    wrong_password(app, "nobody@nowhere.example")  # no one's: the default clinic's, as before
    log_in(app.client, GLOW_ADMIN)
    glow_audit = app.client.get("/staff/audit").text
    assert "login_failed" in glow_audit
    assert "Gia Glow" in glow_audit and GLOW_AGENT[0] in glow_audit
    assert "nobody@nowhere.example" not in glow_audit
    log_in(app.client, NURSE)
    default_audit = app.client.get("/staff/audit").text
    assert "Gia Glow" not in default_audit and GLOW_AGENT[0] not in default_audit
    assert "nobody@nowhere.example" in default_audit


def test_the_ops_view_counts_only_the_clinic_shown(app, glow):
    open_handoff(app)
    log_in(app.client, AGENT)
    harbor_ops = app.client.get("/staff/ops").text
    assert "Aisha Khan" in harbor_ops  # the demo's failed payment, in the churn section
    log_in(app.client, GLOW_AGENT)
    glow_ops = app.client.get("/staff/ops").text
    assert "Aisha Khan" not in glow_ops and "demo-" not in glow_ops


def test_a_member_of_two_clinics_switches_with_one_click(app, glow):
    with app.db.session() as session:
        add_staff(session, *AGENT, clinic=clinics.require(session, "glow"))
    token = log_in(app.client, AGENT)
    queue = app.client.get("/staff").text
    assert 'value="glow"' in queue and 'value="default"' in queue
    switched = app.client.post(
        "/staff/clinic", data={"clinic": "glow", "csrf_token": token}, follow_redirects=True
    )
    assert "Now showing Glow Skin." in switched.text
    assert app.client.get("/staff/patients/glow-1").status_code == 200
    assert app.client.get("/staff/patients/demo-maria").status_code == 404
    refused = app.client.post("/staff/clinic", data={"clinic": "elsewhere", "csrf_token": token})
    assert refused.status_code == 404


def test_metrics_count_per_clinic_and_never_name_a_patient(app, glow):
    before = app.client.get("/metrics").text
    app.sms("wheres my rx", sender=JAMES, To=GLOW_NUMBER)
    after = app.client.get("/metrics").text

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("ps_inbound_messages_total", clinic="glow") == 1
    assert moved("ps_inbound_messages_total", clinic="default") == 0
    assert moved("ps_replies_total", clinic="glow") == 1
    assert "glow-1" not in after and "Gwen" not in after and JAMES not in after
