"""Alerts by topic ("stop reminders", "only urgent", in English and Spanish) and caregivers
("Update for Sofia: …"), through the engine on the demo clinic, as people would text them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect, select

from bot.conversations import Conversation
from bot.handoffs import Handoff
from bot.messages import Direction, Message
from bot.proactive.policy import Policy
from bot.proactive.rules import Notice
from bot.turn import opening
from status import alerts, caregivers, clinics, links, patients
from status.clinics import DEFAULT_ID
from status.db import utcnow
from status.events.apply import apply_events
from status.events.schemas import parse_events
from tests.builders import appointment_event, payment_event, shipment_event
from tests.conftest import API_KEY, on_both_databases
from tests.harness import NOW

pytestmark = pytest.mark.clock

MARIA, LUIS, FAMILY = "+15550100001", "+15550100004", "+15550100006"
ANA = "+15550100099"  # Sofia's sister, her caregiver
API_HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def one(database, model, *where):
    with database.session() as session:
        return session.scalars(select(model).where(*where)).one()


def muted(database, phone: str) -> tuple[set[str], bool]:
    with database.session() as session:
        [patient] = patients.by_phone(session, DEFAULT_ID, phone)
        topics, only_urgent = alerts.muted_topics(session, DEFAULT_ID, patient.id)
        return {t.value for t in topics}, only_urgent


def notice(database, phone: str, template: str, entity: str = "prescription", **kw):
    """What the proactive policy writes for this news now: the outbox rows, by address."""
    with database.session() as session:
        found = patients.by_phone(session, DEFAULT_ID, phone)
        [patient] = [p for p in found if p.first_name != "Diego"]
        source = kw.pop("source_id", "rx-x")
        policy = Policy(_settings(database))
        policy.notify(session, Notice(patient.id, f"{entity}:{source}", template, entity, source,
                                      **kw), NOW)  # fmt: skip
        session.flush()
        rows = session.scalars(
            select(Message).where(Message.direction == Direction.OUT, Message.kind == "proactive")
        )
        return {(m.address, m.template): m.body for m in rows if m.status == "pending"}


_SETTINGS = {}


def _settings(database):
    return _SETTINGS[database.url]


@pytest.fixture(autouse=True)
def _remember_settings(settings, database):
    _SETTINGS[database.url] = settings.model_copy(update={"notify_delay_seconds": 0})
    yield
    _SETTINGS.pop(database.url, None)


@on_both_databases
def test_stop_reminders_mutes_refill_reminders_and_is_not_an_opt_out(phone, clinic):
    maria = phone(MARIA)
    reply = maria.say("stop reminders")
    assert "No more texts about refill reminders" in reply
    assert "You'll still get shipping and pharmacy, billing, appointments and delay notices" in (
        reply
    )
    assert one(clinic, Conversation, Conversation.address == MARIA).opted_out is False
    assert muted(clinic, MARIA) == ({"refills"}, False)
    sent = notice(clinic, MARIA, "remind_refill_due", extra={"due": "2026-12-01"})
    assert (MARIA, "remind_refill_due") not in sent
    assert (MARIA, "notify_shipped") in notice(clinic, MARIA, "notify_shipped",
                                               source_id="rx-maria-1")  # fmt: skip
    # "what alerts do I get?" says what is on and off; "start reminders" undoes it.
    status = maria.say("what alerts do I get?")
    assert "You get texts about shipping and pharmacy, billing, appointments and delay notices" in (
        status
    )
    assert "Off: refill reminders" in status
    assert "You'll get all our alerts" in maria.say("start reminders")
    assert muted(clinic, MARIA) == (set(), False)
    # STOP alone is still the carrier keyword: everything stops.
    assert "unsubscribed" in maria.say("STOP")
    assert one(clinic, Conversation, Conversation.address == MARIA).opted_out is True


def test_no_more_shipping_texts_and_only_urgent(phone, clinic):
    maria = phone(MARIA)
    assert "No more texts about shipping and pharmacy" in maria.say("no more shipping texts")
    assert (MARIA, "notify_shipped") not in notice(clinic, MARIA, "notify_shipped",
                                                   source_id="rx-maria-1")  # fmt: skip
    assert "only get urgent texts" in maria.say("only urgent")
    assert muted(clinic, MARIA) == ({"shipping"}, True)
    # Urgent-only: a failed payment (she must act) still comes; an appointment booking doesn't.
    sent = notice(clinic, MARIA, "notify_payment_failed", "payment", source_id="pay-maria-1")
    assert (MARIA, "notify_payment_failed") in sent
    sent = notice(clinic, MARIA, "notify_appointment_booked", "appointment", source_id="a-1")
    assert (MARIA, "notify_appointment_booked") not in sent
    # Her own questions are always answered, whatever she turned off.
    maria.say("where is my prescription")
    assert "UPS" in maria.say("03/14/1985")


@on_both_databases
def test_alerts_by_topic_in_spanish(phone, clinic):
    luis = phone(LUIS)
    reply = luis.say("ya no me manden recordatorios")
    assert "Ya no le enviaremos mensajes sobre recordatorios de resurtido" in reply
    assert muted(clinic, LUIS) == ({"refills"}, False)
    assert one(clinic, Conversation, Conversation.address == LUIS).opted_out is False
    assert "Ya no le enviaremos mensajes sobre envios y farmacia" in luis.say(
        "no más mensajes de envíos"
    )
    status = luis.say("¿qué alertas recibo?")
    assert "Recibe mensajes sobre pagos, citas y avisos de retraso" in status
    assert "Solo le enviaremos mensajes urgentes" in luis.say("solo urgentes")
    assert muted(clinic, LUIS) == ({"refills", "shipping"}, True)
    assert "Recibira todos nuestros avisos" in luis.say("quiero todos los avisos otra vez")
    assert muted(clinic, LUIS) == (set(), False)


def add_ana(clinic, topics=("shipping",), may_ask=True):
    with clinic.session() as session:
        family = patients.by_phone(session, DEFAULT_ID, FAMILY)
        [sofia] = [p for p in family if p.first_name == "Sofia"]
        carer, _ = caregivers.add(
            session, sofia, name="Ana", relation="sister", channel="sms", address=ANA,
            topics=list(topics), may_ask=may_ask, now=NOW, created_by="test",
        )  # fmt: skip
        return carer.id


@on_both_databases
def test_caregiver_with_shipping_updates_asks_where_her_prescription_is(phone, clinic):
    add_ana(clinic)
    ana = phone(ANA)
    ask = ana.say("where is her prescription")
    assert ask.startswith("Hi Ana, it's Harbor Health.")
    assert "reply with Sofia's date of birth" in ask
    assert "provider" not in ask  # nothing before verification
    answer = ana.say("09/17/1982")
    assert answer.startswith("Update for Sofia: Thanks, you're verified.")
    assert "waiting for your provider's review" in answer
    assert "Levothyroxine" not in answer  # no medication names by SMS, for her either
    # Billing is not among the topics staff chose for her.
    refused = ana.say("what does she owe")
    assert "isn't among the updates Sofia's clinic shares with you" in refused
    assert "$" not in refused
    # The news she receives says whose it is; billing news does not reach her.
    sent = notice(clinic, FAMILY, "notify_rx_approved", source_id="rx-sofia-1")
    assert sent[(ANA, "notify_rx_approved")].startswith("Harbor Health: Update for Sofia:")
    assert (FAMILY, "notify_rx_approved") in sent  # Sofia is told too
    with clinic.session() as session:
        apply_events(session, parse_events([payment_event(payment_id="pay-s",
                                                          patient_id="demo-sofia")]))  # fmt: skip
    sent = notice(clinic, FAMILY, "notify_payment_failed", "payment", source_id="pay-s")
    assert (FAMILY, "notify_payment_failed") in sent
    assert (ANA, "notify_payment_failed") not in sent


ANA_BY_API = {"name": "Ana", "relation": "sister", "phone": ANA, "topics": ["shipping"],
              "may_ask_questions": True}  # fmt: skip
SOFIAS_CAREGIVERS = "/api/patients/demo-sofia/caregivers"


def post_caregiver(app, body: dict):
    return app.client.post(SOFIAS_CAREGIVERS, json=body, headers=API_HEADERS)


@on_both_databases
def test_adding_the_same_caregiver_twice_by_api_keeps_one_and_texts_her_once(app, fake_twilio):
    first = post_caregiver(app, ANA_BY_API)
    # a redelivered request, the phone written as a person writes it
    again = post_caregiver(app, {**ANA_BY_API, "phone": "(555) 010-0099"})
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json() == first.json()
    listed = app.client.get(SOFIAS_CAREGIVERS, headers=API_HEADERS).json()["caregivers"]
    assert listed == [first.json()]
    shipped = shipment_event(
        shipment_id="ship-sofia", patient_id="demo-sofia", prescription_id="rx-sofia-1",
        occurred_at=utcnow().isoformat(),
    )  # fmt: skip
    app.events(shipped)
    app.drain()
    [news] = [m.body for m in fake_twilio.messages if m.to == ANA]
    assert news.startswith("Harbor Health: Update for Sofia:")


def test_adding_a_caregiver_again_with_other_details_updates_the_one_she_is(app):
    first = post_caregiver(app, ANA_BY_API).json()
    details = {"relation": "sister-in-law", "may_ask_questions": False}
    changed = post_caregiver(app, {**ANA_BY_API, **details, "topics": ["billing", "shipping"]})
    assert changed.status_code == 200, changed.text
    assert changed.json() == {**first, **details, "topics": ["shipping", "billing"]}
    assert app.client.get(SOFIAS_CAREGIVERS, headers=API_HEADERS).json()["caregivers"] == [
        changed.json()
    ]


def test_caregiver_stop_stops_only_her_own_messages(phone, clinic):
    add_ana(clinic)
    ana = phone(ANA)
    assert "unsubscribed" in ana.say("STOP")
    sent = notice(clinic, FAMILY, "notify_rx_approved", source_id="rx-sofia-1")
    assert (ANA, "notify_rx_approved") not in sent
    assert (FAMILY, "notify_rx_approved") in sent
    assert one(clinic, Conversation, Conversation.address == FAMILY).opted_out is False


def test_caregiver_who_may_not_ask_is_pointed_to_the_patient(phone, clinic):
    add_ana(clinic, may_ask=False)
    reply = phone(ANA).say("where is her prescription")
    assert "questions go to Sofia or the clinic" in reply
    assert "date of birth" not in reply


def test_handoff_from_a_caregiver_says_who_wrote(phone, clinic):
    add_ana(clinic)
    phone(ANA).say("I need to talk to a person about my sister")
    handoff = one(clinic, Handoff)
    assert handoff.summary.startswith("caregiver Ana (sister):")
    assert handoff.context["writer"] == {
        "kind": "caregiver", "name": "Ana", "relation": "sister", "channel": "sms", "address": ANA,
    }  # fmt: skip
    phone(MARIA).say("can I talk to a person")
    maria_handoff = [h for h in _all(clinic, Handoff) if h.id != handoff.id][0]
    assert maria_handoff.context["writer"] == {"kind": "patient"}


def test_a_caregiver_writing_into_the_patients_open_handoff_is_shown_as_who_wrote(phone, clinic):
    with clinic.session() as session:
        [maria] = patients.by_phone(session, DEFAULT_ID, MARIA)
        caregivers.add(
            session, maria, name="Ana", relation="sister", channel="sms", address=ANA,
            topics=["shipping"], may_ask=True, now=NOW, created_by="test",
        )  # fmt: skip
    phone(MARIA).say("can I talk to a person")
    assert one(clinic, Handoff).context["writer"] == {"kind": "patient"}
    reply = phone(ANA).say("any news? my sister is worried")
    assert "Got it, this is with our team." in reply
    handoff = one(clinic, Handoff)  # the same hand-off: Ana's text was filed into it
    ana = {"kind": "caregiver", "name": "Ana", "relation": "sister", "channel": "sms",
           "address": ANA}  # fmt: skip
    assert handoff.context["writer"] == ana
    assert handoff.context["writers"] == [{"kind": "patient"}, ana]
    assert one(clinic, Message, Message.address == ANA, Message.direction == Direction.IN)\
        .handoff_id == handoff.id  # fmt: skip


def test_caregivers_texts_keep_to_the_clinics_daily_cap_and_wait_in_one_digest(phone, clinic):
    add_ana(clinic, topics=("shipping", "appointments"))
    with clinic.session() as session:
        clinics.update(session, clinics.default(session), daily_message_cap=1)
        visit = appointment_event(appointment_id="a-1", patient_id="demo-sofia")
        apply_events(session, parse_events([visit]))
    first = notice(clinic, FAMILY, "notify_rx_approved", source_id="rx-sofia-1")
    assert first[(ANA, "notify_rx_approved")].startswith("Harbor Health: Update for Sofia:")
    later = notice(clinic, FAMILY, "notify_appointment_booked", "appointment", source_id="a-1")
    assert (ANA, "notify_appointment_booked") not in later
    digest = later[(ANA, "notify_caregiver_digest")]
    assert digest.startswith("Harbor Health: Updates for Sofia:\n1) ")
    row = one(clinic, Message, Message.address == ANA,
              Message.template == "notify_caregiver_digest")  # fmt: skip
    assert row.not_before > NOW + timedelta(hours=12)  # tomorrow, not today
    assert (FAMILY, "notify_digest") in later  # Sofia's own cap, counted apart


def _all(database, model):
    with database.session() as session:
        return list(session.scalars(select(model)))


def test_asking_for_everything_gets_the_status_link(phone, clinic):
    reply = phone(MARIA).say("can you show me everything")
    assert "Here's everything in one place: https://clinic.example/s/" in reply
    assert "Maria" not in reply.split("/s/")[1]
    spanish = phone(LUIS).say("quiero ver mi cuenta")
    assert "Aqui esta todo en un solo lugar: https://clinic.example/s/" in spanish


def test_prescription_answer_by_sms_ends_with_the_details_link_once_a_day(phone, clinic):
    maria = phone(MARIA)
    maria.say("where is my rx")
    answer = maria.say("3/14/85")
    assert "\nDetails: https://clinic.example/s/" in answer
    assert "Details:" not in maria.say("where is my rx")  # she has it already today


def test_a_link_a_turn_makes_waits_for_the_batchs_flush_and_later_turns_know_of_it(clinic):
    # A worker runs several turns in one transaction and writes their rows in one flush; a
    # link made by one turn is known to the next turns' opening read before it is written.
    with clinic.session() as session:
        [maria] = patients.by_phone(session, DEFAULT_ID, MARIA)

        def linked(since):
            return opening.read(session, DEFAULT_ID, "sms", MARIA, since).linked_since[
                (maria.id, None)
            ]

        assert not linked(NOW - timedelta(days=1))
        issued = links.issue(session, maria, hours=24, now=NOW, created_by="bot", flush=False)
        assert inspect(issued.link).pending  # not written yet
        assert linked(NOW - timedelta(days=1))
        assert not linked(NOW + timedelta(hours=1))  # made before that
    [link] = _all(clinic, links.StatusLink)
    assert (link.patient_id, link.created_by) == (maria.id, "bot")


def test_news_the_patient_must_act_on_carries_the_status_link(clinic):
    sent = notice(clinic, MARIA, "notify_payment_failed", "payment", source_id="pay-maria-1")
    assert "\nDetails: https://clinic.example/s/" in sent[(MARIA, "notify_payment_failed")]
    again = notice(clinic, MARIA, "notify_payment_failed", "payment", source_id="pay-maria-1")
    assert "Details:" not in again[(MARIA, "notify_payment_failed")]  # once a day
