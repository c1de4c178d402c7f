"""The operations view's figures, computed from a real database filled through the event code."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot import conversations, handoffs
from bot.conversations import Conversation
from bot.engine import Engine
from bot.handoffs import Reason
from bot.messages import Message
from bot.proactive.scheduler import Scheduler
from channels.staff import ops
from status import demo
from status.clinics import DEFAULT_ID
from status.events.apply import apply_events
from status.events.schemas import parse_events
from tests.builders import T0, at, event, patient_event, payment_event, prescription_event
from tests.conftest import on_both_databases
from tests.harness import NOW as NOW_DEMO
from tests.harness import Patient
from tests.staff.conftest import AISHA, JAMES, MARIA, log_in

LUIS, EMILY, FAMILY = "+15550100004", "+15550100005", "+15550100006"

NOW = T0 + timedelta(hours=30)


def subscription_event(status: str, sid: str, patient_id: str, minutes: float = 0) -> dict:
    return event(
        "subscription.updated", at(minutes), subscription_id=sid, patient_id=patient_id,
        plan="Monthly care plan", amount_cents=29900, currency="USD", status=status,
        auto_renew=True,
    )  # fmt: skip


def seed(session) -> None:
    apply_events(
        session,
        parse_events([
            patient_event("p-1"),
            patient_event("p-2", first_name="Ana", phone="+1 555 010 0022"),
            patient_event("p-3", first_name="Bo", phone="+1 555 010 0033"),
            # 30 h awaiting the provider: stuck (24 h); 20 h processing: not yet (72 h).
            prescription_event("awaiting_provider", "rx-1", "p-1", occurred_at=at(0)),
            prescription_event("processing", "rx-2", "p-2", occurred_at=at(600)),
            payment_event("failed", "pay-1", "p-1", occurred_at=at(60)),
            subscription_event("past_due", "sub-1", "p-1", 60),
            subscription_event("cancelled", "sub-2", "p-2", 120),
            subscription_event("active", "sub-3", "p-3", 0),
        ]),
    )  # fmt: skip
    session.flush()


def say(session, address: str, text: str, intent: str, minutes: float):
    conv = conversations.get_or_create(session, DEFAULT_ID, "sms", address)
    message = Message(
        clinic_id=DEFAULT_ID,
        conversation_id=conv.id, direction="in", kind="reply", channel="sms", address=address,
        body=text, intent=intent, intents=[intent], confidence=0.2,
        created_at=T0 + timedelta(minutes=minutes),
    )  # fmt: skip
    session.add(message)
    session.flush()
    return conv


def test_states_count_ages_owners_and_flag_stuck_items(session, settings):
    seed(session)
    states = ops.states(session, DEFAULT_ID, NOW, ops.stuck_thresholds(settings))
    [awaiting] = states.rows["prescription"][:1]
    assert (awaiting.status, awaiting.owner, awaiting.count) == ("awaiting_provider", "clinic", 1)
    assert awaiting.oldest_seconds == 30 * 3600 and awaiting.stuck == 1
    processing = states.rows["prescription"][1]
    assert (processing.status, processing.owner, processing.stuck) == ("processing", "pharmacy", 0)
    # Past due and failed for 29 h: under their 72 h, so only the prescription is stuck.
    assert [(s.kind, s.source_id, s.patient_name) for s in states.stuck] == [
        ("prescription", "rx-1", "Maria Lopez")
    ]
    assert {r.status for r in states.rows["subscription"]} == {"active", "past_due", "cancelled"}


def test_owners_name_every_status_of_every_kind():
    for kind in ops.KINDS:
        assert set(ops.OWNERS[kind.name]) == {s.value for s in kind.statuses}, kind.name
        assert set(ops.OWNERS[kind.name].values()) <= {
            "clinic", "pharmacy", "carrier", "patient", "—",
        }  # fmt: skip


def test_failed_payments_are_kept_apart_from_cancellations(session):
    seed(session)
    churn = ops.churn(session, DEFAULT_ID, NOW, days=30)
    assert [c.source_id for c in churn.past_due] == ["sub-1"]
    assert [c.source_id for c in churn.failed_payments] == ["pay-1"]
    assert churn.failed_amounts == {"USD": 29900}
    assert [c.source_id for c in churn.cancelled] == ["sub-2"]
    assert (churn.cancelled_recently, churn.active) == (1, 1)


def test_assistant_figures_share_handoffs_and_median_first_reply(session):
    seed(session)
    talked = [say(session, f"+1555010010{i}", "hi", "greeting", i) for i in range(4)]
    say(session, "+15550100109", "blorp the flurb", "unknown", 5)
    for conv, minutes in [(talked[0], 10), (talked[1], 30)]:
        handoff, _ = handoffs.open_or_add(
            session, clinic_id=DEFAULT_ID,
            reason=Reason.HUMAN, now=T0, patient_id=None, conversation_id=conv.id
        )
        handoffs.staff_reply(
            session, handoff, staff_id=None, text="hello", now=T0 + timedelta(minutes=minutes)
        )
    handoffs.open_or_add(
        session, clinic_id=DEFAULT_ID, reason=Reason.CLINICAL_QUESTION, now=T0, patient_id=None,
        conversation_id=talked[2].id,
    )  # fmt: skip
    figures = ops.assistant(session, DEFAULT_ID, NOW, days=30)
    assert (figures.conversations, figures.without_staff, figures.handoffs) == (5, 2, 3)
    assert figures.share_without_staff == 2 / 5
    assert figures.by_reason == [("human", 2), ("clinical_question", 1)]
    assert figures.median_first_reply_seconds == 20 * 60
    assert figures.waiting_for_first_reply == 1


@on_both_databases
def test_did_not_understand_lists_real_misses_not_answers_to_the_bots_questions(database, settings):
    with database.session() as session:
        demo.seed(session, now=NOW_DEMO)
    engine = Engine(settings)
    maria, family, luis, emily, james, aisha = (
        Patient(database, engine, phone) for phone in (MARIA, FAMILY, LUIS, EMILY, JAMES, AISHA)
    )
    # Answers to the bot's own questions: a date of birth, a choice, a yes, a C.
    maria.say("wheres my rx")
    assert "verified" in maria.say("3/14/85")
    family.say("is my prescription ready?")
    assert "date of birth" in family.say("2")
    luis.say("cuando me toca el resurtido")
    luis.say("30/05/1968")
    assert "Listo" in luis.say("si")
    emily.clock = NOW_DEMO + timedelta(hours=3)
    assert Scheduler(settings, database).run_once(emily.clock)["appointment"] == 1
    assert "confirmed" in emily.say("C")
    # Real misses: twice not understood (the second hands off), and one filed to staff.
    assert "didn't get that" in james.say("blorp the flurb")
    assert "asked a member of our team" in james.say("zzkx qwv")
    aisha.say("can I talk to a person")
    aisha.say("my birthday is 07/23/1991 if you need it")  # filed to staff, date redacted
    aisha.clock += timedelta(minutes=40)  # past the hand-off's "we got it" acknowledgement
    assert "with our team" in aisha.say("mmhm grr")  # acknowledged, still a miss
    with database.session() as session:
        stored = {
            m.body: m.intent
            for m in session.scalars(select(Message).where(Message.direction == "in"))
        }
        missed = [m.body for m, _ in ops.unknown_messages(session, DEFAULT_ID)]
    answers = ["[date of birth]", "2", "si", "C", "my birthday is [date of birth] if you need it"]
    assert [stored[a] for a in answers] == ["unknown"] * 5  # no intent of their own
    assert missed == ["mmhm grr", "zzkx qwv", "blorp the flurb"]


def test_ops_page_shows_failed_messages_with_codes_and_unknown_texts(app):
    assert app.sms("<i>what about the thing</i>", sender=MARIA).status_code == 200
    app.drain()
    with app.db.session() as session:
        conv = session.scalars(select(Conversation).where(Conversation.address == MARIA)).one()
        session.add(
            Message(
                clinic_id=DEFAULT_ID,
                conversation_id=conv.id, direction="out", kind="reply", channel="sms",
                address="+15550100001", body="Your order shipped", status="undelivered",
                error_code="30006", error_message="Landline or unreachable carrier",
            )
        )  # fmt: skip
    log_in(app.client)
    page = app.client.get("/staff/ops").text
    for section in ['id="assistant"', 'id="states"', 'id="churn"', 'id="failed"', 'id="unknown"']:
        assert section in page
    assert "30006" in page and "Landline or unreachable carrier" in page
    assert "&lt;i&gt;what about the thing&lt;/i&gt;" in page
    assert 'id="involuntary"' in page and 'id="voluntary"' in page
