"""The staff console over HTTP: sessions, CSRF, roles, the queue, staff actions and their audit
trail. (What a browser shows and runs is in test_console_browser.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot import conversations, handoffs
from bot.handoffs import Handoff, HandoffEntry, Reason
from bot.messages import Message
from channels.staff.models import AuditEntry, StaffUser
from channels.staff.queue import sla
from status.caregivers import Caregiver
from status.clinics import DEFAULT_ID
from status.db import utcnow
from tests.staff.conftest import AGENT, AISHA, JAMES, MARIA, NURSE, csrf_of, log_in, open_handoff


def test_pages_send_a_stranger_to_the_login_page(app):
    for path in ["/staff", "/staff/ops", "/staff/handoffs/1", "/staff/audit"]:
        response = app.client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/staff/login?next=%2Fstaff")
    poll = app.client.get("/staff/handoffs/1/live", headers={"Accept": "application/json"})
    assert poll.status_code == 401


def test_login_sets_a_signed_httponly_lax_cookie_scoped_to_the_console(app):
    token = csrf_of(app.client.get("/staff/login").text)
    response = app.client.post(
        "/staff/login",
        data={"email": NURSE[0], "password": NURSE[3], "csrf_token": token},
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 303 and response.headers["location"] == "/staff"
    assert "ps_staff=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "path=/staff" in cookie and "secure" in cookie  # PUBLIC_BASE_URL is https
    assert csrf_of(app.client.get("/staff").text) != token  # a new token for the new session


def test_wrong_password_or_unknown_email_is_refused_the_same_way(app):
    token = csrf_of(app.client.get("/staff/login").text)
    for email, password in [(NURSE[0], "not-her-password"), ("nobody@demo.clinic", "whatever!!")]:
        response = app.client.post(
            "/staff/login", data={"email": email, "password": password, "csrf_token": token}
        )
        assert response.status_code == 401
        assert "Wrong email or password" in response.text
    assert app.client.get("/staff", follow_redirects=False).status_code == 303


def test_disabled_login_is_refused_and_ends_an_open_session(app):
    log_in(app.client, AGENT)
    with app.db.session() as session:
        session.query(StaffUser).filter_by(email=AGENT[0]).update({"active": False})
    assert app.client.get("/staff", follow_redirects=False).status_code == 303
    token = csrf_of(app.client.get("/staff/login").text)
    response = app.client.post(
        "/staff/login", data={"email": AGENT[0], "password": AGENT[3], "csrf_token": token}
    )
    assert response.status_code == 401


def test_login_form_without_csrf_token_is_refused(app):
    app.client.get("/staff/login")
    response = app.client.post("/staff/login", data={"email": NURSE[0], "password": NURSE[3]})
    assert response.status_code == 403
    assert "security token is missing" in response.text
    assert app.client.get("/staff", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(("token", "problem"), [(None, "is missing"), ("forged", "does not match")])
def test_staff_forms_without_the_sessions_csrf_token_change_nothing(app, token, problem):
    handoff = open_handoff(app)
    log_in(app.client)
    data = {"text": "note from nowhere"} | ({"csrf_token": token} if token else {})
    for action in ["note", "reply", "take", "resolve"]:
        response = app.client.post(f"/staff/handoffs/{handoff.id}/{action}", data=data)
        assert response.status_code == 403, action
        assert f"security token {problem}" in response.text
    [row] = app.rows(Handoff)
    assert (row.status, row.assignee_id) == ("open", None)
    assert app.rows(HandoffEntry, HandoffEntry.kind.in_(["note", "reply", "assign"])) == []
    assert app.rows(Message, Message.kind == "staff") == []


def test_logout_needs_the_token_and_ends_the_session(app):
    token = log_in(app.client)
    assert app.client.post("/staff/logout", data={}).status_code == 403
    response = app.client.post("/staff/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.headers["location"] == "/staff/login"
    assert app.client.get("/staff", follow_redirects=False).status_code == 303


def test_after_login_only_console_paths_are_followed(app):
    token = csrf_of(app.client.get("/staff/login").text)
    for target, lands in [
        ("/staff/ops", "/staff/ops"),
        ("https://evil.example/staff", "/staff"),
        ("//evil.example/staff", "/staff"),
        ("/staff\\@evil.example", "/staff"),
    ]:
        app.client.cookies.clear()
        token = csrf_of(app.client.get("/staff/login").text)
        response = app.client.post(
            "/staff/login",
            data={"email": NURSE[0], "password": NURSE[3], "csrf_token": token, "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == lands


def test_only_an_admin_sees_the_audit_log(app):
    log_in(app.client, AGENT)
    refused = app.client.get("/staff/audit")
    assert refused.status_code == 403 and "Only an admin" in refused.text
    assert 'href="/staff/audit"' not in app.client.get("/staff").text
    app.client.cookies.clear()
    log_in(app.client, NURSE)
    page = app.client.get("/staff/audit")
    assert page.status_code == 200 and "Audit log" in page.text


def test_queue_puts_urgent_first_then_oldest_and_filters(app):
    normal = open_handoff(app, MARIA, "can I talk to a person")
    high = open_handoff(app, JAMES, "is this rash normal after the cream")
    urgent = open_handoff(app, AISHA, "chest pain and my left arm is numb")
    token = log_in(app.client, AGENT)
    page = app.client.get("/staff").text
    order = [page.index(f'data-handoff="{h.id}"') for h in (urgent, high, normal)]
    assert order == sorted(order)
    assert "due in" in page
    clinical = app.client.get("/staff?queue=clinical").text
    assert f'data-handoff="{normal.id}"' not in clinical
    assert f'data-handoff="{high.id}"' in clinical and f'data-handoff="{urgent.id}"' in clinical

    app.client.post(f"/staff/handoffs/{high.id}/take", data={"csrf_token": token})
    mine = app.client.get("/staff?assignee=mine").text
    unassigned = app.client.get("/staff?assignee=unassigned").text
    assert f'data-handoff="{high.id}"' in mine and f'data-handoff="{urgent.id}"' not in mine
    assert f'data-handoff="{high.id}"' not in unassigned
    assert "Alex Agent" in app.client.get("/staff").text


def test_first_response_timer_reads_due_soon_late_and_answered():
    now = utcnow()
    handoff = Handoff(status="open", created_at=now, first_response_due=now + timedelta(hours=4))
    assert (sla(handoff, now).label, sla(handoff, now).level) == ("due in 4 h", "ok")
    assert sla(handoff, now + timedelta(hours=3, minutes=52)).level == "soon"
    late = sla(handoff, now + timedelta(hours=4, minutes=5))
    assert (late.label, late.level, late.late_by, late.late) == (
        "late by 5 min",
        "late",
        "5 min",
        True,
    )
    handoff.first_response_at = now + timedelta(minutes=7)
    assert (sla(handoff, now).label, sla(handoff, now).level) == ("answered in 7 min", "met")


def test_reply_note_take_resolve_from_the_console_are_done_and_audited(app, fake_twilio):
    handoff = open_handoff(app)
    app.drain()
    token = log_in(app.client, AGENT)
    page = app.client.get(f"/staff/handoffs/{handoff.id}")
    assert page.status_code == 200 and "Maria Lopez" in page.text
    app.client.post(f"/staff/handoffs/{handoff.id}/take", data={"csrf_token": token})
    app.client.post(
        f"/staff/handoffs/{handoff.id}/note",
        data={"csrf_token": token, "text": "checked UPS: arrives tomorrow"},
    )
    reply = app.client.post(
        f"/staff/handoffs/{handoff.id}/reply",
        data={"csrf_token": token, "text": "Hi Maria, your order arrives tomorrow."},
    )
    assert "Reply queued" in reply.text
    app.drain()
    assert fake_twilio.messages[-1].body == "Hi Maria, your order arrives tomorrow."
    done = app.client.post(
        f"/staff/handoffs/{handoff.id}/resolve", data={"csrf_token": token, "note": "answered"}
    )
    assert "resolved" in done.text and 'id="reply-form"' not in done.text
    [row] = app.rows(Handoff)
    agent = app.rows(StaffUser, StaffUser.email == AGENT[0])[0]
    assert (row.status, row.assignee_id, row.resolved_by) == ("resolved", agent.id, agent.id)
    actions = [a.action for a in app.rows(AuditEntry, AuditEntry.staff_id == agent.id)]
    assert actions[:2] == ["login", "viewed"]
    assert {"took", "noted", "replied", "resolved"} <= set(actions)
    [replied] = app.rows(AuditEntry, AuditEntry.action == "replied")
    assert "your order arrives tomorrow" in replied.detail
    assert replied.patient_id == row.patient_id and replied.handoff_id == row.id


def test_empty_reply_is_not_sent_and_says_why(app):
    handoff = open_handoff(app)
    token = log_in(app.client)
    page = app.client.post(
        f"/staff/handoffs/{handoff.id}/reply", data={"csrf_token": token, "text": "   "}
    )
    assert "Not sent: the reply is empty" in page.text
    assert app.rows(Message, Message.kind == "staff") == []


@pytest.mark.parametrize("text", ["\x00", "Hi Maria,\x00 it ships today."])
def test_reply_holding_a_nul_is_not_sent_and_says_why(app, text):
    handoff = open_handoff(app)
    token = log_in(app.client)
    page = app.client.post(
        f"/staff/handoffs/{handoff.id}/reply", data={"csrf_token": token, "text": text}
    )
    assert page.status_code == 200 and "Not sent: the reply holds a NUL" in page.text
    assert app.rows(Message, Message.kind == "staff") == []
    assert app.rows(AuditEntry, AuditEntry.action == "replied") == []


def test_conversation_poll_changes_only_when_the_thread_does(app):
    handoff = open_handoff(app)
    log_in(app.client)
    url = f"/staff/handoffs/{handoff.id}/live"
    first = app.client.get(url).json()
    same = app.client.get(url, params={"stamp": first["stamp"]}).json()
    assert first["changed"] and same == {
        "stamp": first["stamp"],
        "status": "open",
        "changed": False,
    }
    app.sms("still waiting <b>please</b>", sender=MARIA)
    new = app.client.get(url, params={"stamp": first["stamp"]}).json()
    assert new["changed"] and "still waiting &lt;b&gt;please&lt;/b&gt;" in new["html"]


def test_pages_carry_no_store_and_a_strict_content_security_policy(app):
    log_in(app.client)
    response = app.client.get("/staff")
    assert response.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_patient_page_shows_live_state_and_is_audited(app):
    log_in(app.client)
    page = app.client.get("/staff/patients/demo-james")
    assert page.status_code == 200
    assert "Upload a photo ID" in page.text and "blocked" in page.text
    assert app.client.get("/staff/patients/nobody").status_code == 404
    [viewed] = app.rows(AuditEntry, AuditEntry.action == "viewed")
    assert viewed.detail == "patient page" and viewed.patient_id is not None


def test_the_same_caregiver_sent_twice_from_the_patient_page_is_added_once(app):
    token = log_in(app.client)
    form = {"csrf_token": token, "name": "Ana", "relation": "sister", "channel": "sms",
            "address": "+15550100099", "topics": ["shipping"], "may_ask": "1"}  # fmt: skip
    url = "/staff/patients/demo-james/caregivers"
    assert "Ana added as a caregiver." in app.client.post(url, data=form).text
    again = app.client.post(url, data={**form, "address": "555-010-0099"})
    assert "Ana is already a caregiver at that address: nothing changed." in again.text
    assert again.text.count("Ana (sister)") == 1
    [carer] = app.rows(Caregiver)
    assert (carer.address, carer.topics, carer.may_ask) == ("+15550100099", ["shipping"], True)
    added = app.rows(AuditEntry, AuditEntry.action.like("caregiver%"))
    assert [a.action for a in added] == ["caregiver added"]


def test_staff_chat_alert_says_the_reason_in_the_consoles_words(session, settings):
    with_chat = settings.model_copy(update={"telegram_staff_chat_id": "-1001234"})
    conv = conversations.get_or_create(session, DEFAULT_ID, "sms", "+15550100077")
    handoff, _ = handoffs.open_or_add(
        session, clinic_id=DEFAULT_ID,
        reason=Reason.BLOCKED, now=utcnow(), patient_id=None, conversation_id=conv.id,
        settings=with_chat,
    )  # fmt: skip
    [alert] = session.scalars(select(Message).where(Message.kind == "staff_alert")).all()
    assert alert.address == "-1001234"
    assert f"#{handoff.id}: asked about a blocked prescription (fulfilment queue)" in alert.body
