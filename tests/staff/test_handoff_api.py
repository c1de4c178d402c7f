"""The hand-off API: a whole hand-off from the patient's "a person please" to the bot answering
again, through the real app, the real twilio/aiogram clients and the fake providers."""

from __future__ import annotations

import pytest

from bot.handoffs import Handoff
from bot.messages import Message
from channels.staff.models import AuditEntry
from status.clinics import DEFAULT_ID
from tests.conftest import on_both_databases
from tests.fakes.telegram_server import text_update
from tests.staff.conftest import API_HEADERS, JAMES, MARIA, log_in, open_handoff


def outbound(app, *where):
    return app.rows(Message, Message.direction == "out", *where)


@on_both_databases
def test_person_request_to_staff_reply_to_bot_again(app, fake_twilio):
    # The patient asks for a person: a hand-off with the context packet, and the bot says so.
    handoff = open_handoff(app, MARIA, "can I talk to a person")
    app.drain()
    assert "take over" in fake_twilio.messages[-1].body
    packet = handoff.context
    assert packet["patient"]["name"] == "Maria Lopez"
    assert packet["snapshot"]["prescriptions"][0]["status"] == "shipped"
    assert packet["conversation"]["channel"] == "sms"

    # While staff own the conversation, the bot stays silent and files the message.
    replies_before = len(outbound(app))
    app.sms("hello? anyone there", sender=MARIA)
    assert len(outbound(app)) == replies_before

    listed = app.client.get("/api/handoffs?status=open", headers=API_HEADERS).json()
    assert [h["id"] for h in listed["handoffs"]] == [handoff.id]
    assert listed["handoffs"][0]["context"]["patient"]["name"] == "Maria Lopez"
    detail = app.client.get(f"/api/handoffs/{handoff.id}", headers=API_HEADERS).json()
    assert detail["patient_id"] == "demo-maria"
    assert [m["body"] for m in detail["transcript"] if m["direction"] == "in"] == [
        "can I talk to a person",
        "hello? anyone there",
    ]
    assert [e["kind"] for e in detail["entries"]] == ["trigger", "message"]
    assert detail["live_context"]["snapshot"]["shipments"][0]["status"] == "in_transit"

    # A staff reply through the API leaves by SMS to the patient's phone.
    response = app.client.post(
        f"/api/handoffs/{handoff.id}/reply",
        json={"text": "Hi Maria, it's Sam at the clinic. Your order arrives tomorrow."},
        headers=API_HEADERS,
    )
    assert response.status_code == 202
    body = response.json()
    [queued] = outbound(app, Message.id == body["message_id"])
    assert (queued.channel, queued.address, queued.kind, queued.status) == (
        "sms", MARIA, "staff", "pending",
    )  # fmt: skip
    app.drain()
    assert fake_twilio.messages[-1].to == MARIA
    assert fake_twilio.messages[-1].body.startswith("Hi Maria, it's Sam at the clinic.")

    # Resolving gives the conversation back: the next question gets the bot's answer.
    response = app.client.post(
        f"/api/handoffs/{handoff.id}/resolve", json={"note": "told her"}, headers=API_HEADERS
    )
    assert response.status_code == 200
    assert response.json()["status"] == "resolved"
    app.sms("where is my prescription", sender=MARIA)
    app.drain()
    assert "date of birth" in fake_twilio.messages[-1].body
    actions = [(a.actor, a.action) for a in app.rows(AuditEntry, AuditEntry.actor == "api")]
    assert ("api", "replied") in actions and ("api", "resolved") in actions


def test_staff_reply_to_a_telegram_conversation_leaves_through_telegram(app, fake_telegram):
    from channels import telegram_links
    from status import patients
    from status.db import utcnow

    with app.db.session() as session:
        maria = patients.by_source_id(session, DEFAULT_ID, "demo-maria")
        token = telegram_links.create_token(session, app.settings.secret_key, maria, utcnow())
    app.telegram(text_update(5151, f"/start {token}", update_id=1))
    app.telegram(text_update(5151, "I want to talk to a real person", update_id=2))
    app.drain()
    [handoff] = app.rows(Handoff)
    response = app.client.post(
        f"/api/handoffs/{handoff.id}/reply",
        json={"text": "On it <Sam>"},
        headers=API_HEADERS,
    )
    assert response.status_code == 202 and response.json()["channel"] == "telegram"
    app.drain()
    assert fake_telegram.sent(5151)[-1].params["text"] == "On it &lt;Sam&gt;"
    log_in(app.client)  # the console shows it as the patient saw it, escaped once
    page = app.client.get(f"/staff/handoffs/{handoff.id}").text
    assert "On it &lt;Sam&gt;" in page and "&amp;lt;Sam" not in page


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer nope"}, "wrong API key"),
        ({"Authorization": "Basic dGVzdA=="}, "missing bearer token"),
    ],
)
def test_calls_without_the_right_key_are_401(app, headers, message):
    handoff = open_handoff(app)
    calls = [
        ("get", "/api/handoffs", None),
        ("get", f"/api/handoffs/{handoff.id}", None),
        ("post", f"/api/handoffs/{handoff.id}/reply", {"text": "hi"}),
        ("post", f"/api/handoffs/{handoff.id}/resolve", {}),
    ]
    for method, path, body in calls:
        response = app.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, path
        assert message in response.json()["detail"]
    assert app.rows(Handoff)[0].status == "open"
    assert outbound(app, Message.kind == "staff") == []


def test_unknown_handoff_is_404_naming_the_id(app):
    for method, path, body in [
        ("get", "/api/handoffs/999", None),
        ("post", "/api/handoffs/999/reply", {"text": "hi"}),
        ("post", "/api/handoffs/999/resolve", None),
    ]:
        response = app.client.request(method, path, json=body, headers=API_HEADERS)
        assert response.status_code == 404
        assert response.json()["detail"] == "no hand-off with id 999"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the body is empty"),
        (b"text=hello", "not valid JSON"),
        (b'["hello"]', "must be a JSON object, not list"),
        (b"{}", '"text" is required'),
        (b'{"text": ""}', '"text" is empty'),
        (b'{"text": "   "}', '"text" is empty'),
        (b'{"text": 42}', '"text" must be a string, not int'),
        (b'{"text": "hi", "channel": "sms"}', "unknown field(s) 'channel'"),
        (b'{"text": "' + b"x" * 1601 + b'"}', "1601 characters; the limit is 1600"),
        (b'{"text": "a\\u0000b"}', '"text" holds a NUL'),
        (b'{"text": "a\\ud800b"}', '"text" holds a NUL or a lone surrogate'),
    ],
)
def test_bad_reply_bodies_are_422_and_nothing_is_sent(app, content, message):
    handoff = open_handoff(app)
    response = app.client.post(
        f"/api/handoffs/{handoff.id}/reply",
        content=content,
        headers={**API_HEADERS, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert outbound(app, Message.kind == "staff") == []


def test_bad_resolve_bodies_are_422_and_the_handoff_stays_open(app):
    handoff = open_handoff(app)
    for content, message in [
        (b'{"note": 7}', '"note" must be a string, not int'),
        (b'{"notes": "typo"}', "unknown field(s) 'notes'"),
        (b"not json", "not valid JSON"),
    ]:
        response = app.client.post(
            f"/api/handoffs/{handoff.id}/resolve", content=content, headers=API_HEADERS
        )
        assert response.status_code == 422
        assert message in response.json()["detail"]
    assert app.rows(Handoff)[0].status == "open"


def test_resolving_twice_is_409_and_replying_after_is_refused(app):
    handoff = open_handoff(app)
    first = app.client.post(f"/api/handoffs/{handoff.id}/resolve", headers=API_HEADERS)
    again = app.client.post(f"/api/handoffs/{handoff.id}/resolve", headers=API_HEADERS)
    late = app.client.post(
        f"/api/handoffs/{handoff.id}/reply", json={"text": "hi"}, headers=API_HEADERS
    )
    assert first.status_code == 200 and first.json()["resolution_note"] is None
    assert again.status_code == 409
    assert again.json()["detail"] == f"hand-off {handoff.id} is already resolved; nothing changed"
    assert late.status_code == 409 and "nothing was sent" in late.json()["detail"]
    assert outbound(app, Message.kind == "staff") == []


def test_list_filters_by_status_and_refuses_unknown_ones(app):
    maria = open_handoff(app, MARIA)
    james = open_handoff(app, JAMES, "is this rash normal after the cream")
    app.client.post(f"/api/handoffs/{maria.id}/resolve", headers=API_HEADERS)
    open_ids = app.client.get("/api/handoffs?status=open", headers=API_HEADERS).json()
    resolved = app.client.get("/api/handoffs?status=resolved", headers=API_HEADERS).json()
    everything = app.client.get("/api/handoffs", headers=API_HEADERS).json()
    assert [h["id"] for h in open_ids["handoffs"]] == [james.id]
    assert [h["id"] for h in resolved["handoffs"]] == [maria.id]
    assert {h["id"] for h in everything["handoffs"]} == {maria.id, james.id}
    bad = app.client.get("/api/handoffs?status=closed", headers=API_HEADERS)
    assert bad.status_code == 422
    [problem] = bad.json()["errors"]
    assert problem["field"] == "query.status"
    assert problem["message"] == "Input should be 'open' or 'resolved'"
