"""Hand-offs as the bot makes them: one per patient, priorities, staff chat alerts without PHI."""

from __future__ import annotations

import pytest

from bot.handoffs import Handoff, HandoffEntry
from bot.messages import Message
from tests.builders import patient_event
from tests.harness import channel_overrides

STAFF_CHAT = "-100777"


@pytest.fixture
def channel_settings(settings, fake_twilio, fake_telegram):
    overrides = {
        **channel_overrides(fake_twilio, fake_telegram),
        "telegram_staff_chat_id": STAFF_CHAT,
    }
    return settings.model_copy(update=overrides)


def test_emergency_answers_first_then_urgent_handoff_and_staff_chat(
    app, fake_twilio, fake_telegram
):
    app.sms("my throat is closing up i cant breathe")
    app.drain()
    [sms] = fake_twilio.messages
    assert "911" in sms.body
    [handoff] = app.rows(Handoff)
    assert (handoff.priority, handoff.queue, handoff.reason) == ("urgent", "clinical", "emergency")
    [alert] = fake_telegram.sent(int(STAFF_CHAT))
    text = alert.params["text"]
    assert f"/staff/handoffs/{handoff.id}" in text and "emergency" in text
    for phi in ("Maria", "Lopez", "throat", "breathe", "+1555"):
        assert phi not in text
    assert handoff.first_response_due is not None


def test_normal_handoffs_do_not_ping_the_staff_chat(app, fake_telegram):
    app.sms("can i talk to someone")
    app.drain()
    assert fake_telegram.sent(int(STAFF_CHAT)) == []


def test_one_open_handoff_per_patient_collects_every_trigger(app):
    app.sms("agent please")
    app.sms("also my chest hurts really bad")
    [handoff] = app.rows(Handoff)
    assert handoff.reasons == ["human", "emergency"]
    assert handoff.priority == "urgent"  # raised by the emergency
    kinds = [e.kind for e in app.rows(HandoffEntry)]
    assert kinds.count("trigger") == 2


def test_context_packet_is_frozen_with_what_staff_need(app):
    app.sms("where is my prescription")
    app.sms("03/14/1985")
    app.sms("i want to talk to a person")
    [handoff] = app.rows(Handoff)
    packet = handoff.context
    assert packet["patient"]["name"] == "Maria Lopez"
    assert packet["conversation"]["verified"] is True
    assert packet["snapshot"]["prescriptions"][0]["status"] == "shipped"
    assert packet["snapshot"]["prescriptions"][0]["seconds_in_status"] > 0
    assert [m["body"] for m in packet["transcript"]][:1] == ["where is my prescription"]
    assert packet["last_intents"][-1]["intent"] == "human"
    assert "timeline" in packet and "told" in packet and "alerts" in packet


def test_a_handoff_opened_before_the_number_had_a_patient_is_the_patients_once_it_has(
    app, fake_twilio
):
    """A stranger asks for a person; the clinic then records them as a patient with that
    phone: the bot still does not talk over staff, and files what follows into the same one."""
    stranger = "+15550105555"
    app.sms("can I talk to a person please", sender=stranger)
    app.drain()
    [opened] = app.rows(Handoff)
    assert opened.patient_id is None and opened.open_key.startswith("conversation:")
    app.events(patient_event("p-dana", first_name="Dana", phone=stranger))
    app.sms("hello? anyone?", sender=stranger)
    app.drain()
    [handoff] = app.rows(Handoff)
    assert handoff.id == opened.id and handoff.patient_id is not None
    assert handoff.open_key == f"patient:{handoff.patient_id}"
    filed = app.rows(Message, Message.handoff_id == handoff.id, Message.direction == "in")
    assert [m.body for m in filed][-1] == "hello? anyone?"
    replies = [m.body for m in fake_twilio.messages if m.to == stranger]
    assert not any("Dana" in body for body in replies), replies


def test_patient_messages_during_a_handoff_are_filed_not_answered(app, fake_twilio):
    app.sms("agent")
    app.sms("hello?? anyone")
    app.drain()
    assert len(fake_twilio.messages) == 1
    [handoff] = app.rows(Handoff)
    filed = app.rows(Message, Message.handoff_id == handoff.id, Message.direction == "in")
    assert [m.body for m in filed][-1] == "hello?? anyone"
    assert handoff.last_patient_message_at is not None
