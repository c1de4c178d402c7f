"""Two clinics in one deployment, one patient phone: each clinic's number reaches its own
patient record and answers from its own number, in its own name, hours and words (the real
twilio client against the fake Twilio server)."""

from __future__ import annotations

import pytest

from bot.conversations import Conversation
from bot.messages import Message
from status import clinics
from status.clinics import DEFAULT_ID
from status.db import utcnow
from status.patients import Patient
from tests.builders import patient_event
from tests.conftest import on_both_databases
from tests.harness import NOW, TWILIO_NUMBER, frozen

GLOW_NUMBER = "+15550109100"
SHARED_PHONE = "+15550100001"  # the demo's Maria at the default clinic (Harbor Health)


@pytest.fixture
def glow(app):
    """A second brand on the same deployment, with Maria's phone as one of its patients too."""
    with app.db.session() as session:
        clinic = clinics.add(
            session, "glow", "Glow Skin", twilio_from_numbers=[GLOW_NUMBER],
            timezone="America/Los_Angeles", hours="Mon-Fri 09:00-17:00",
            support_phone="+1 555 010 9101",
            templates={"en/help_keyword": "Glow Skin care team: call {{ support_phone }}. "
                       "Reply STOP to stop."},
        )  # fmt: skip
        clinic_id = clinic.id
        key = clinics.rotate_key(session, clinic)
    response = app.client.post(
        "/events",
        json=patient_event("demo-maria", first_name="Marisol", last_name="Vega",
                           date_of_birth="1990-06-01", timezone="America/Los_Angeles"),
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    return clinic_id


def sent_to(fake_twilio, sender: str) -> list[str]:
    return [m.body for m in fake_twilio.messages if m.from_ == sender and m.to == SHARED_PHONE]


@on_both_databases
@pytest.mark.clock
def test_each_clinics_number_reaches_its_own_patient_and_answers_as_that_clinic(
    app, fake_twilio, glow
):
    # 10:00 in New York (Harbor open, 08-18) is 07:00 in Los Angeles (Glow opens at 09:00)
    with frozen(NOW):
        app.sms("wheres my rx", SHARED_PHONE, To=TWILIO_NUMBER)
        app.sms("wheres my rx", SHARED_PHONE, To=GLOW_NUMBER)
        app.sms("I want to talk to a person", SHARED_PHONE, To=TWILIO_NUMBER)
        app.sms("I want to talk to a person", SHARED_PHONE, To=GLOW_NUMBER)
        app.drain()
    harbor, glow_texts = sent_to(fake_twilio, TWILIO_NUMBER), sent_to(fake_twilio, GLOW_NUMBER)
    assert harbor[0].startswith("Hi Maria, it's Harbor Health.")
    assert glow_texts[0].startswith("Hi Marisol, it's Glow Skin.")
    assert "within about 2 business hours" in harbor[1]
    assert "when we open" in glow_texts[1] and "9:00 AM PST" in glow_texts[1]
    assert not any("Glow" in text for text in harbor)
    assert not any("Harbor" in text for text in glow_texts)
    with app.db.session() as session:
        rows = {
            (p.clinic_id, p.first_name)
            for p in session.query(Patient).filter(Patient.phone == SHARED_PHONE)
        }
        assert rows == {(DEFAULT_ID, "Maria"), (glow, "Marisol")}
        convs = session.query(Conversation).filter(Conversation.address == SHARED_PHONE).all()
        assert sorted(c.clinic_id for c in convs) == [DEFAULT_ID, glow]
        inbound = session.query(Message).filter(Message.direction == "in").all()
        assert sorted(m.clinic_id for m in inbound) == [DEFAULT_ID, DEFAULT_ID, glow, glow]


@on_both_databases
@pytest.mark.clock
def test_a_clinics_messaging_service_routes_its_sms_whatever_the_to_number(
    app, fake_twilio, glow
):
    glow_service = "MG" + "9" * 32
    with app.db.session() as session:
        clinics.update(
            session, clinics.require(session, "glow"), twilio_messaging_service_sid=glow_service
        )
    with frozen(NOW):
        app.sms("wheres my rx", SHARED_PHONE, To=TWILIO_NUMBER, MessagingServiceSid=glow_service)
        app.sms("wheres my rx", SHARED_PHONE, To=TWILIO_NUMBER, MessagingServiceSid="MG" + "0" * 32)
        app.drain()
    replies = [m for m in fake_twilio.messages if m.to == SHARED_PHONE]
    assert [m.messaging_service_sid for m in replies if "Glow" in m.body] == [glow_service]
    assert [m.from_ for m in replies if "Harbor" in m.body] == [TWILIO_NUMBER]
    with app.db.session() as session:
        inbound = session.query(Message).filter(Message.direction == "in").all()
        assert sorted(m.clinic_id for m in inbound) == [DEFAULT_ID, glow]


def test_a_template_override_rewords_one_message_for_one_clinic_only(app, fake_twilio, glow):
    app.sms("HELP", SHARED_PHONE, To=GLOW_NUMBER)
    app.sms("HELP", SHARED_PHONE, To=TWILIO_NUMBER)
    app.drain()
    [glow_help] = sent_to(fake_twilio, GLOW_NUMBER)
    [harbor_help] = sent_to(fake_twilio, TWILIO_NUMBER)
    assert glow_help == "Glow Skin care team: call +1 555 010 9101. Reply STOP to stop."
    assert harbor_help.startswith("Harbor Health: prescription and appointment updates.")


def test_stop_to_one_clinic_does_not_stop_the_other(app, fake_twilio, glow):
    app.sms("STOP", SHARED_PHONE, To=GLOW_NUMBER)
    app.sms("HELP", SHARED_PHONE, To=TWILIO_NUMBER)
    app.drain()
    with app.db.session() as session:
        opted = {
            c.clinic_id: c.opted_out
            for c in session.query(Conversation).filter(Conversation.address == SHARED_PHONE)
        }
    assert opted == {glow: True, DEFAULT_ID: False}
    assert sent_to(fake_twilio, TWILIO_NUMBER)[0].startswith("Harbor Health:")


def test_a_clinic_without_its_own_number_never_texts_from_anothers(app, fake_twilio):
    with app.db.session() as session:
        clinic = clinics.add(session, "nonum", "No Number Clinic")
        key = clinics.rotate_key(session, clinic)
    response = app.client.post(
        "/events",
        json={"events": [patient_event("p-9", phone="+15550100999"),
                         {"id": "rx-9-1", "type": "prescription.updated",
                          "occurred_at": utcnow().isoformat(),
                          "data": {"prescription_id": "rx-9", "patient_id": "p-9",
                                   "medication": "X", "status": "shipped"}}]},
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    app.drain()
    assert [m for m in fake_twilio.messages if m.to == "+15550100999"] == []
    with app.db.session() as session:
        codes = {m.error_code for m in session.query(Message).filter(Message.direction == "out")
                 if m.address == "+15550100999"}  # fmt: skip
    assert codes == {"channel_not_configured"}


GLOW_BOT = "777000:glow-bot-token"
GLOW_SECRET = "glow-secret-1"


def test_a_clinics_own_bot_has_its_own_webhook_secret_and_answers_as_that_bot(
    app, fake_telegram, glow
):
    from bot.inbox import InboxMessage
    from tests.fakes.telegram_server import text_update

    fake_telegram.other_bots.add(GLOW_BOT)
    with app.db.session() as session:
        clinics.update(
            session, clinics.require(session, "glow"),
            telegram_bot_token=GLOW_BOT, telegram_webhook_secret=GLOW_SECRET,
        )  # fmt: skip
    update = text_update(31337, "hello", update_id=7)
    wrong = app.client.post(
        "/webhooks/telegram/glow", json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": "tg-secret-123"},  # the default bot's
    )  # fmt: skip
    assert wrong.status_code == 401
    unknown = app.client.post(
        "/webhooks/telegram/nowhere", json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": GLOW_SECRET},
    )  # fmt: skip
    assert unknown.status_code == 404 and "no clinic with slug 'nowhere'" in unknown.text
    ok = app.client.post(
        "/webhooks/telegram/glow", json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": GLOW_SECRET},
    )  # fmt: skip
    assert ok.status_code == 200
    # the same update id at the default bot is another update, not a redelivery
    assert app.telegram(text_update(31337, "hello", update_id=7)).json()["outcome"] == "queued"
    app.turns()
    app.drain()
    with app.db.session() as session:
        rows = session.query(InboxMessage).filter(InboxMessage.provider_id == "7").all()
        assert sorted(r.clinic_id for r in rows) == [DEFAULT_ID, glow]
    by_token = {call.token for call in fake_telegram.sent(31337)}
    assert by_token == {GLOW_BOT, fake_telegram.token}
    glow_reply = next(c for c in fake_telegram.sent(31337) if c.token == GLOW_BOT)
    assert "Glow Skin" in glow_reply.params["text"]
