"""Whole exchanges through the engine on the demo clinic, as a patient would have them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.conversations import Conversation
from bot.engine import Engine
from bot.handoffs import Handoff
from bot.messages import Direction, Message
from status.clinics import DEFAULT_ID
from status.refills import Refill
from status.timeline import TimelineEntry
from tests.conftest import on_both_databases
from tests.harness import CLINIC_ZONE, NOW, Patient

pytestmark = pytest.mark.clock

MARIA, JAMES, AISHA, LUIS, EMILY, FAMILY = (
    "+15550100001", "+15550100002", "+15550100003", "+15550100004", "+15550100005", "+15550100006",
)  # fmt: skip


def rows(database, model, *where):
    with database.session() as session:
        return list(session.scalars(select(model).where(*where)))


@on_both_databases
def test_unverified_question_is_answered_right_after_date_of_birth(phone, clinic):
    maria = phone(MARIA)
    ask = maria.say("wheres my rx")
    assert "date of birth" in ask
    assert "UPS" not in ask and "shipped" not in ask
    answer = maria.say("3/14/85")
    assert answer.startswith("Thanks, you're verified.")
    assert "shipped" in answer and "UPS" in answer
    assert "https://www.ups.com/track?tracknum=1Z999AA10123456784" in answer
    assert "Semaglutide" not in answer  # no medication names on SMS
    assert "3/14/85" not in answer and "1985" not in answer
    stored = rows(clinic, Message, Message.direction == Direction.IN)
    assert "3/14/85" not in [m.body for m in stored]
    # Verified for 30 days: the next question is answered at once.
    assert "all paid up" in maria.say("what do i owe")


def test_three_wrong_dates_lock_the_address_and_hand_off(phone, clinic):
    maria = phone(MARIA)
    maria.say("where is my prescription")
    assert "2 tries left" in maria.say("01/01/1990")
    assert "1 try left" in maria.say("1990-02-02")
    locked = maria.say("March 3 1970")
    assert "can't share details" in locked
    handoff = rows(clinic, Handoff)[0]
    assert handoff.reason == "verification_locked"
    # Even the right date no longer unlocks facts: a person has it now.
    assert "shipped" not in maria.say("3/14/1985")


def test_shared_phone_asks_who_then_remembers(phone):
    family = phone(FAMILY)
    ask = family.say("is my prescription ready?")
    assert "1 for Sofia" in ask and "2 for Diego" in ask
    assert "Diego" in family.say("diego") or True
    answer = family.say("12/01/2004")
    assert "ready for pickup" in answer
    assert "Walgreens, 12 Main St" in answer


def test_blocked_prescription_answers_with_the_task_link(phone, clinic):
    james = phone(JAMES)
    james.say("why hasnt my medication shipped yet")
    answer = james.say("11/02/1979")
    assert "on hold" in answer
    assert "https://portal.example/tasks/upload-id" in answer
    # A blocked patient asking about it is handed to fulfilment staff too.
    assert rows(clinic, Handoff)[0].reason == "blocked"


def test_failed_payment_comes_with_the_secure_link(phone):
    aisha = phone(AISHA)
    aisha.say("my card got declined??")
    answer = aisha.say("07/23/1991")
    assert "didn't go through (card expired)" in answer
    assert "$299.00" in answer
    assert "https://pay.example/update" in answer
    retry = NOW + timedelta(days=3)  # the demo's retry date
    assert (
        f"try again {retry.astimezone(CLINIC_ZONE):%b} {retry.astimezone(CLINIC_ZONE).day}"
        in answer
    )


def test_refill_offer_then_yes_records_a_request(phone, clinic):
    luis = phone(LUIS)
    luis.say("cuando me toca el resurtido")
    answer = luis.say("30/05/1968")
    assert "resurtido" in answer and "Responda SI" in answer  # accents folded to fit GSM-7
    assert "Listo" in luis.say("si")
    refill = rows(clinic, Refill, Refill.origin == "patient")[0]
    assert refill.status == "requested"
    kinds = [e.kind for e in rows(clinic, TimelineEntry)]
    assert "refill_requested" in kinds


def test_stop_silences_until_start(phone, clinic):
    maria = phone(MARIA)
    assert "unsubscribed" in maria.say("STOP")
    assert maria.say("where is my prescription") == ""
    assert "resubscribed" in maria.say("start")
    assert "date of birth" in maria.say("where is my prescription")


def test_stop_with_twilio_handling_is_recorded_silently(clinic, settings):
    engine = Engine(settings)  # SMS_KEYWORD_REPLIES=twilio: Twilio already replied
    maria = Patient(clinic, engine, MARIA)
    assert maria.say("Stop.") == ""
    assert rows(clinic, Conversation)[0].opted_out


def test_thanks_then_stop_texting_me_opts_out(phone, clinic):
    assert "unsubscribed" in phone(MARIA).say("thanks, stop texting me")
    assert rows(clinic, Conversation)[0].opted_out


@pytest.mark.parametrize(
    "text", ["ok stop", "Stop, thanks", "I said stop", "u can stop now", "thanks but stop"]
)
def test_stop_with_the_words_people_put_around_it_opts_out(phone, clinic, text):
    # Twilio's own handling answers only the bare keyword; these reach us and are ours to honour.
    assert "unsubscribed" in phone(MARIA).say(text)
    assert rows(clinic, Conversation)[0].opted_out


def test_a_date_of_birth_sent_before_we_ask_verifies(phone, clinic):
    maria = phone(MARIA)
    reply = maria.say("03/14/1985")  # she knows the drill: no "Sorry, I didn't get that"
    assert reply.startswith("Thanks, you're verified.")
    assert "UPS" in maria.say("where is my rx")  # no second ask
    assert all("1985" not in m.body for m in rows(clinic, Message))


def test_a_wrong_date_of_birth_sent_before_we_ask_counts_as_a_try(phone, clinic):
    reply = phone(MARIA).say("01/01/1990")
    assert "2" in reply and "verified" not in reply
    assert rows(clinic, Conversation)[0].failed_verifications == 1


def test_a_greeting_clause_before_a_question_gets_the_answer(phone):
    maria = phone(MARIA)
    assert "date of birth" in maria.say("hi, where is my prescription")
    assert "UPS" in maria.say("3/14/85")
    answer = maria.say("hi, what do i owe?")
    assert answer.startswith("You're all paid up")  # the answer, no greeting menu before it


def test_a_keyword_written_as_a_sentence_beside_other_words_is_honoured(phone, clinic):
    maria = phone(MARIA)
    assert "unsubscribed" in maria.say("ok thanks. STOP")
    assert rows(clinic, Conversation)[0].opted_out
    # START opts in again, and what else the message asks is answered
    reply = maria.say("START. when is my next appointment")
    assert "resubscribed" in reply and "date of birth" in reply
    assert not rows(clinic, Conversation)[0].opted_out
    assert "visit" in maria.say("3/14/85")


def test_a_plain_request_to_stop_texting_beside_another_request_opts_out(phone, clinic):
    reply = phone(MARIA).say("stop the automated texts, just have a real person call me")
    assert "unsubscribed" in reply
    assert rows(clinic, Conversation)[0].opted_out


def test_stop_beside_an_emergency_gives_the_emergency_answer_first(phone, clinic):
    reply = phone(MARIA).say("STOP. i took all my pills and i want to die")
    assert "988" in reply and "unsubscribed" in reply
    assert reply.index("988") < reply.index("unsubscribed")
    assert rows(clinic, Conversation)[0].opted_out
    assert rows(clinic, Handoff)[0].priority == "urgent"


@pytest.mark.parametrize(
    "text",
    [
        "cancel my subscription",
        "cancel my appointment",
        "cancel my plan pls",
        "STOP charging me twice",
        "stop my subscription",
        "the pharmacy stopped my order",
        "can you stop the shipment",
        "im done. cancel. no I dont want a discount",
    ],
)
def test_cancel_requests_never_opt_out(phone, clinic, text):
    reply = phone(MARIA).say(text)
    assert "unsubscribed" not in reply
    assert not rows(clinic, Conversation)[0].opted_out


def test_emergency_gets_instructions_at_once_and_an_urgent_handoff(phone, clinic):
    reply = phone(MARIA).say("my chest hurts and my left arm is numb")
    assert "911" in reply
    handoff = rows(clinic, Handoff)[0]
    assert (handoff.reason, handoff.priority, handoff.queue) == ("emergency", "urgent", "clinical")


def test_crisis_message_points_to_988(phone):
    assert "988" in phone(MARIA).say("i dont want to live anymore, thinking about killing myself")


def test_two_intents_are_answered_in_one_reply(phone):
    maria = phone(MARIA)
    maria.say("hi")
    maria.say("where is my rx and what do i owe")
    answer = maria.say("03/14/1985")
    assert "shipped" in answer and "all paid up" in answer
    assert answer.index("shipped") < answer.index("all paid up")


def test_spanish_question_gets_a_spanish_answer(phone):
    maria = phone(MARIA)
    ask = maria.say("donde esta mi receta?")
    assert "fecha de nacimiento" in ask
    answer = maria.say("14/03/1985")
    assert "se envi" in answer and "UPS" in answer and "deberia llegar" in answer


def test_card_number_is_redacted_before_it_is_stored(phone, clinic):
    reply = phone(AISHA).say("here is my new card 4111 1111 1111 1111 exp 04/29")
    assert "never text card numbers" in reply
    assert "https://pay.example/update" in reply
    bodies = [m.body for m in rows(clinic, Message)]
    assert not any("4111" in body for body in bodies)


def test_a_card_security_code_is_never_stored_and_the_patient_is_told(phone, clinic):
    reply = phone(AISHA).say("card 4111 1111 1111 1111 exp 04/29 cvv 731, and the cvc is 731")
    assert "never text card numbers or security codes" in reply
    alone = phone(AISHA).say("oh and the security code is 8264")
    assert "never text card numbers or security codes" in alone
    bodies = " ".join(m.body for m in rows(clinic, Message))
    assert "731" not in bodies and "8264" not in bodies and "04/29" not in bodies
    assert "cvv [security code removed]" in bodies


def test_unknown_number_gets_contact_details_and_no_facts(phone):
    reply = phone("+15559990000").say("where is my prescription")
    assert "+1 555 010 0200" in reply
    assert "date of birth" not in reply


def test_two_unknowns_in_a_row_hand_off(phone, clinic):
    maria = phone(MARIA)
    assert "didn't get that" in maria.say("purple monkey dishwasher")
    assert "team" in maria.say("zzzz qqq")
    assert rows(clinic, Handoff)[0].reason == "not_understood"


def test_open_handoff_silences_the_bot(phone, clinic):
    maria = phone(MARIA)
    assert "member of our team" in maria.say("can i talk to a real person")
    assert maria.say("where is my prescription") == ""
    handoff = rows(clinic, Handoff)[0]
    filed = rows(clinic, Message, Message.handoff_id == handoff.id, Message.direction == "in")
    assert [m.body for m in filed][-1] == "where is my prescription"
    # Emergency instructions still go out while a person owns the conversation.
    assert "911" in maria.say("i cant breathe")


def test_clinical_question_goes_to_clinical_staff(phone, clinic):
    reply = phone(MARIA).say("is it normal to feel nauseous after the shot")
    assert "care team" in reply
    handoff = rows(clinic, Handoff)[0]
    assert (handoff.queue, handoff.priority) == ("clinical", "high")


def test_telegram_may_name_the_medication(clinic, engine, session):
    from status import patients

    maria = patients.by_source_id(session, DEFAULT_ID, "demo-maria")
    maria.telegram_chat_id = "777"
    session.commit()
    chat = Patient(clinic, engine, "777", channel="telegram")
    chat.say("where is my prescription")
    assert "Semaglutide 0.5 mg" in chat.say("03/14/1985")


def test_asking_for_a_person_about_facts_hands_off_without_a_dob_prompt(phone, clinic):
    reply = phone(EMILY).say("I want to talk to a person about my prescription")
    assert "member of our team" in reply
    assert "date of birth" not in reply
    assert rows(clinic, Handoff)[0].reason == "human"


def test_shared_phone_asks_again_after_the_conversation_went_quiet(phone):
    family = phone(FAMILY)
    family.say("is my prescription ready?")
    family.say("2")
    assert "ready for pickup" in family.say("12/01/2004")
    family.clock += timedelta(hours=2)
    ask = family.say("where is my prescription")
    assert "1 for Sofia" in ask and "ready for pickup" not in ask


def test_emergency_after_stop_still_gets_instructions_and_staff(phone, clinic):
    maria = phone(MARIA)
    maria.say("STOP")
    assert "911" in maria.say("my chest hurts so bad i cant breathe")
    [reply] = rows(clinic, Message, Message.template == "emergency")
    assert reply.kind == "system"  # not cancelled by the opt-out at send time
    assert rows(clinic, Handoff)[0].priority == "urgent"


def test_open_handoff_acknowledges_at_most_every_half_hour(phone, clinic):
    maria = phone(MARIA)
    maria.say("can i talk to a real person")
    assert maria.say("hello?") == ""  # we just said a person will reply
    maria.clock += timedelta(minutes=31)
    ack = maria.say("still waiting on someone")
    assert ack.startswith("Got it, this is with our team.") and "reply here" in ack
    assert maria.say("anyone there") == ""  # once per half hour, not per message
    assert "911" in maria.say("i cant breathe")  # emergencies still first


def test_after_an_emergency_each_message_gets_911_again_until_a_person_answers(phone, clinic):
    from bot import handoffs

    maria = phone(MARIA)
    assert "911" in maria.say("cant breathe rn")
    for follow_up in ("what do i do", "help me", "ok"):
        reply = maria.say(follow_up)
        assert "911" in reply and "988" in reply, follow_up  # not "within 2 business hours"
        assert "business hours" not in reply
    with clinic.session() as session:
        handoff = session.scalars(select(Handoff)).one()
        assert handoff.priority == "urgent"
        handoffs.staff_reply(session, handoff, staff_id=None, text="Maria, it's Ana, calling you",
                             now=maria.clock)  # fmt: skip
    assert maria.say("ok thank you") == ""  # a person is talking now: the bot does not


def test_a_spanish_speakers_emergency_follow_up_is_in_spanish(phone):
    maria = phone(MARIA)
    assert "911" in maria.say("no puedo respirar")
    assert "Si es una emergencia, llame al 911" in maria.say("que hago")


def test_open_handoff_stays_quiet_while_staff_are_writing(phone, clinic):
    from bot import handoffs

    maria = phone(MARIA)
    maria.say("can i talk to a real person")
    maria.clock += timedelta(minutes=40)
    with clinic.session() as session:
        handoff = session.scalars(select(Handoff)).one()
        handoffs.staff_reply(session, handoff, staff_id=None, text="Hi Maria, Ana here.",
                             now=maria.clock)  # fmt: skip
    assert maria.say("hi ana, thanks") == ""  # a person is talking: the bot does not


def test_delivered_but_missing_package_goes_to_fulfilment(phone, clinic):
    maria = phone(MARIA)
    reply = maria.say("my package says delivered but i don't have it")
    assert "fulfilment team" in reply
    assert "out for delivery" not in reply and "date of birth" not in reply
    handoff = rows(clinic, Handoff)[0]
    assert (handoff.reason, handoff.queue) == ("delivery_problem", "fulfilment")


def test_change_of_pharmacy_goes_to_staff_not_a_status(phone, clinic):
    reply = phone(MARIA).say("change my pharmacy to cvs")
    assert "asked our team" in reply and "shipped" not in reply
    assert rows(clinic, Handoff)[0].reason == "change_request"


def test_shared_phone_date_of_birth_instead_of_a_choice_picks_the_person(phone, clinic):
    family = phone(FAMILY)
    assert "1 for Sofia" in family.say("is my prescription ready?")
    answer = family.say("12/01/2004")  # Diego's: he is writing, and verified
    assert "ready for pickup" in answer and "Walgreens, 12 Main St" in answer
    [conv] = rows(clinic, Conversation)
    assert conv.patient_id == conv.verified_patient_id


def test_shared_phone_date_of_birth_that_matches_nobody_is_explained(phone, clinic):
    family = phone(FAMILY)
    family.say("is my prescription ready?")
    reply = family.say("01/01/1990")
    assert "doesn't match anyone" in reply and "1 for Sofia" in reply
    family.say("02/02/1990")
    assert "can't share details" in family.say("03/03/1990")
    assert rows(clinic, Handoff)[0].reason == "verification_locked"


def test_spanish_conversation_folds_every_sms_the_same_way(phone, clinic):
    luis = phone(LUIS)
    luis.say("cuando me toca el resurtido")
    luis.say("30/05/1968")
    luis.say("si")
    luis.say("gracias")
    replies = rows(clinic, Message, Message.direction == Direction.OUT)
    assert len(replies) == 4
    for reply in replies:
        assert not set(reply.body) & set("áíóúÁÍÓÚ"), reply.body
    assert "Pedi su resurtido" in replies[2].body


@on_both_databases
def test_refill_requested_in_the_chat_shows_in_the_next_answer(phone, clinic):
    luis = phone(LUIS)
    luis.say("cuando me toca el resurtido")
    luis.say("30/05/1968")
    luis.say("si")
    # answered from the read model: the request the bot recorded is in the patient's snapshot
    answer = luis.say("y mi resurtido?")
    assert "solicitud de resurtido" in answer and "recibida" in answer
