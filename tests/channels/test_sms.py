"""SMS end to end: signed webhooks in, the real twilio client out to a fake Twilio."""

from __future__ import annotations

from datetime import timedelta

from bot.conversations import Conversation
from bot.handoffs import Handoff
from bot.messages import Message
from bot.receipts import Receipt
from tests.channels.conftest import TWILIO_NUMBER
from tests.conftest import on_both_databases

MARIA = "+15550100001"


@on_both_databases
def test_signed_sms_gets_a_reply_through_twilio(app, fake_twilio):
    response = app.sms("where is my prescription", sender=MARIA)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "<Response></Response>" in response.text
    app.drain()
    [sent] = fake_twilio.messages
    assert sent.to == MARIA
    assert sent.from_ == TWILIO_NUMBER
    assert "date of birth" in sent.body
    [reply] = app.rows(Message, Message.direction == "out")
    assert sent.status_callback == (
        f"https://clinic.example/webhooks/twilio/status?outbox_id={reply.id}"
    )
    assert (reply.status, reply.provider_id) == ("sent", sent.sid)


def test_forged_or_unsigned_sms_is_refused_and_nothing_stored(app):
    forged = app.client.post(
        "/webhooks/twilio/sms",
        data={"MessageSid": "SM1", "From": MARIA, "Body": "hi"},
        headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
    )
    unsigned = app.client.post("/webhooks/twilio/sms", data={"MessageSid": "SM2", "From": MARIA})
    assert forged.status_code == 403 and "does not match" in forged.json()["detail"]
    assert unsigned.status_code == 403 and "missing" in unsigned.json()["detail"]
    assert app.count(Message) == 0
    assert app.count(Receipt) == 0


def test_tampered_body_fails_the_signature(app):
    params = {"MessageSid": "SM9", "From": MARIA, "To": TWILIO_NUMBER, "Body": "hi"}
    from twilio.request_validator import RequestValidator

    url = app.settings.public_base_url + "/webhooks/twilio/sms"
    signature = RequestValidator(app.settings.twilio_auth_token).compute_signature(url, params)
    tampered = {**params, "Body": "STOP"}
    response = app.client.post(
        "/webhooks/twilio/sms", data=tampered, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403
    assert app.count(Conversation) == 0


@on_both_databases
def test_redelivered_message_sid_gets_one_reply(app, fake_twilio):
    assert app.sms("hello", sid="SM" + "a" * 32).status_code == 200
    assert app.sms("hello", sid="SM" + "a" * 32).status_code == 200
    app.drain()
    assert len(fake_twilio.messages) == 1
    assert app.count(Message, Message.direction == "in") == 1


def test_delivery_callbacks_are_recorded_in_order(app, fake_twilio):
    app.sms("hi")
    app.drain()
    sid = fake_twilio.messages[0].sid
    assert app.status_callback(fake_twilio.signed_status_callback(sid, "sent")).status_code == 204
    assert (
        app.status_callback(fake_twilio.signed_status_callback(sid, "delivered")).status_code == 204
    )
    # A late "sent" arriving after "delivered" does not move the message back.
    app.status_callback(fake_twilio.signed_status_callback(sid, "queued"))
    [reply] = app.rows(Message, Message.direction == "out")
    assert reply.status == "delivered"
    assert reply.delivered_at is not None


def test_unsigned_status_callback_is_refused(app):
    response = app.client.post(
        "/webhooks/twilio/status", data={"MessageSid": "SM1", "MessageStatus": "delivered"}
    )
    assert response.status_code == 403


def test_error_21610_marks_the_patient_opted_out(app, fake_twilio):
    app.sms("hi")
    app.drain()
    sid = fake_twilio.messages[0].sid
    app.status_callback(fake_twilio.signed_status_callback(sid, "undelivered", error_code="21610"))
    [conv] = app.rows(Conversation, Conversation.address == MARIA)
    assert conv.opted_out
    app.sms("where is my prescription")
    app.drain()
    assert len(fake_twilio.messages) == 1  # nothing more goes to an opted-out number


def test_invalid_number_marks_the_address_and_tells_staff(app, fake_twilio):
    fake_twilio.fail_for(MARIA, code=21614)
    app.sms("hi")
    app.drain()
    [reply] = app.rows(Message, Message.direction == "out")
    assert (reply.status, reply.error_code) == ("failed", "21614")
    [conv] = app.rows(Conversation, Conversation.address == MARIA)
    assert conv.bad_address
    [handoff] = app.rows(Handoff)
    assert handoff.reason == "delivery_failed"


@on_both_databases
def test_provider_500_is_retried_and_delivered_once(app, fake_twilio):
    fake_twilio.fail_next(status=500)
    app.sms("hi")
    app.drain()
    [reply] = app.rows(Message, Message.direction == "out")
    assert (reply.status, reply.attempts, reply.error_code) == ("pending", 1, "20500")
    app.drain(later=timedelta(minutes=5))
    [reply] = app.rows(Message, Message.direction == "out")
    assert (reply.status, reply.attempts) == ("sent", 2)
    assert len([r for r in fake_twilio.requests if r.status_code == 201]) == 1


def test_transient_failures_end_in_a_recorded_failure_only_after_the_time_budget(app, fake_twilio):
    fake_twilio.outage(503)
    app.sms("hi")
    for step in range(6):  # SEND_RETRY_HOURS is 6
        app.drain(later=timedelta(hours=step, minutes=1))
        [reply] = app.rows(Message, Message.direction == "out")
        assert reply.status == "pending"
    app.drain(later=timedelta(hours=6, minutes=5))
    [reply] = app.rows(Message, Message.direction == "out")
    assert (reply.status, reply.error_code) == ("failed", "20503")


def test_permanent_failure_is_final(app, fake_twilio):
    fake_twilio.fail_next(status=400, code=21606, message="The From phone number is not valid")
    app.sms("hi")
    app.drain()
    app.drain(later=timedelta(hours=1))
    [reply] = app.rows(Message, Message.direction == "out")
    assert (reply.status, reply.error_code, reply.attempts) == ("failed", "21606", 1)


def test_picture_message_is_recorded_acknowledged_and_handed_to_staff(app, fake_twilio):
    app.sms(
        "",
        NumMedia="1",
        MediaUrl0="https://api.twilio.com/media/ME1",
        MediaContentType0="image/jpeg",
    )
    app.drain()
    assert "can't read pictures" in fake_twilio.messages[0].body
    [inbound] = app.rows(Message, Message.direction == "in")
    assert inbound.media == ["https://api.twilio.com/media/ME1"]
    assert app.rows(Handoff)[0].reason == "media_received"


def test_words_beside_a_picture_that_ask_something_are_answered_too(app, fake_twilio):
    app.sms("where is my rx")
    app.sms("03/14/1985")
    app.drain()
    before = len(fake_twilio.messages)
    picture = {"MediaUrl0": "https://api.twilio.com/media/ME2", "MediaContentType0": "image/jpeg"}
    app.sms("here is my insurance card. what do i owe?", NumMedia="1", **picture)
    app.drain()
    replies = [m.body for m in fake_twilio.messages[before:]]
    assert any("can't read pictures" in body for body in replies), replies
    assert any("$" in body for body in replies), replies  # the balance, from the snapshot
    assert [h.reason for h in app.rows(Handoff)] == ["media_received"]


def test_without_twilio_credentials_messages_are_logged_not_sent(settings, database, capsys):
    from fastapi.testclient import TestClient

    from bot.engine import Engine
    from bot.inbound import Inbound
    from channels.app import create_app

    with TestClient(create_app(settings, database, run_workers=False)) as client:
        with database.session() as session:
            Engine(settings).handle(session, Inbound("sms", MARIA, "hi"))
        client.portal.call(client.app.state.runtime.dispatcher.drain)
    with database.session() as session:
        [reply] = session.query(Message).filter(Message.direction == "out").all()
        assert reply.status == "logged"
