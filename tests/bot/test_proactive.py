"""Proactive updates end to end: events in through POST /events, texts out at the fake Twilio
(or Telegram), with the clock driven by the test."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from fastapi.testclient import TestClient

from bot.handoffs import Handoff
from bot.messages import Message
from channels.app import create_app
from channels.runtime import Runtime
from status import patients
from status.clinics import DEFAULT_ID
from status.refills import Refill
from status.timeline import TimelineEntry
from tests.builders import (
    event,
    patient_event,
    payment_event,
    prescription_event,
    shipment_event,
)
from tests.conftest import on_both_databases
from tests.harness import CLINIC_ZONE, App, Clock, channel_overrides, frozen

MARIA = "+15550100001"
# Tuesday 2026-11-24 15:00 UTC = 10:00 in New York.
TUESDAY_10AM = datetime.fromisoformat("2026-11-24T15:00:00+00:00")


pytestmark = pytest.mark.clock


@pytest.fixture
def clock():
    with frozen(TUESDAY_10AM) as clock:
        yield clock


@pytest.fixture
def proactive_settings(settings, fake_twilio, fake_telegram):
    return settings.model_copy(
        update={
            **channel_overrides(fake_twilio, fake_telegram),
            "notify_delay_seconds": 60,
            "quiet_hours": "21:00-08:00",
        }
    )


@pytest.fixture
def app(proactive_settings, database, clock):
    runtime = Runtime(proactive_settings, database, clock=clock)
    client = TestClient(
        create_app(proactive_settings, database, runtime=runtime, run_workers=False)
    )
    with client:
        app = App(client, proactive_settings, database)
        app.events(patient_event(occurred_at=at(clock, -600)))
        yield app


def at(clock: Clock, seconds: float = 0) -> str:
    return (clock.now + timedelta(seconds=seconds)).isoformat()


def next_morning_at_8(now: datetime) -> datetime:
    """08:00 the next day in the clinic's zone (whatever daylight saving does in between)."""
    day = now.astimezone(CLINIC_ZONE).date() + timedelta(days=1)
    return datetime.combine(day, time(8), CLINIC_ZONE)


def texts(fake_twilio) -> list[str]:
    return [m.body for m in fake_twilio.messages]


@on_both_databases
def test_shipped_sends_one_sms_with_tracking(app, clock, fake_twilio):
    app.events(shipment_event("in_transit", occurred_at=at(clock)))
    app.drain()
    assert fake_twilio.messages == []  # the coalescing window is still open
    clock.advance(seconds=61)
    app.drain()
    [sms] = texts(fake_twilio)
    assert sms.startswith("Harbor Health: Hi Maria!")
    assert "shipped with UPS" in sms
    assert "https://www.ups.com/track?tracknum=1Z999AA10123456784" in sms
    assert "Semaglutide" not in sms
    assert fake_twilio.messages[0].to == MARIA


def test_three_quick_transitions_make_one_message_with_the_last_state(app, clock, fake_twilio):
    app.events(prescription_event("received_by_pharmacy", occurred_at=at(clock)))
    clock.advance(seconds=10)
    app.events(prescription_event("approved", occurred_at=at(clock), event_id="e-approved"))
    clock.advance(seconds=20)
    app.events(prescription_event("shipped", occurred_at=at(clock)))
    app.events(shipment_event("in_transit", occurred_at=at(clock)))
    clock.advance(seconds=45)  # past the window that opened at the first notifying change
    app.drain()
    [sms] = texts(fake_twilio)
    assert "shipped with UPS" in sms


def test_message_made_obsolete_before_sending_is_cancelled(app, clock, fake_twilio, database):
    app.events(shipment_event("in_transit", occurred_at=at(clock)))
    clock.advance(seconds=30)
    app.events(shipment_event("delivered", occurred_at=at(clock)))
    clock.advance(seconds=60)
    app.drain()
    [sms] = texts(fake_twilio)
    assert "delivered your package" in sms
    cancelled = app.rows(Message, Message.status == "cancelled")
    assert [m.error_code for m in cancelled] == ["superseded"]


def test_noise_transitions_do_not_text(app, clock, fake_twilio):
    app.events(prescription_event("received_by_pharmacy", occurred_at=at(clock)))
    app.events(prescription_event("processing", occurred_at=at(clock, 5)))
    clock.advance(minutes=5)
    app.drain()
    assert fake_twilio.messages == []


def test_quiet_hours_hold_the_message_until_8am_local(app, clock, fake_twilio):
    today = clock.now.astimezone(CLINIC_ZONE).date()
    clock.now = datetime.combine(today, time(22, 30), CLINIC_ZONE)
    app.events(shipment_event("in_transit", occurred_at=at(clock)))
    clock.advance(hours=2)
    app.drain()
    assert fake_twilio.messages == []
    [held] = app.rows(Message, Message.direction == "out")
    morning = next_morning_at_8(clock.now - timedelta(hours=2))
    assert held.not_before == morning
    clock.now = morning + timedelta(seconds=1)
    app.drain()
    assert len(fake_twilio.messages) == 1


def test_opted_out_patient_gets_nothing(app, clock, fake_twilio):
    app.sms("STOP", sender=MARIA)
    app.drain()
    before = len(fake_twilio.messages)
    app.events(shipment_event("in_transit", occurred_at=at(clock)))
    clock.advance(minutes=5)
    app.drain()
    assert len(fake_twilio.messages) == before


def test_no_sms_consent_means_no_proactive_sms(app, clock, fake_twilio):
    app.events(patient_event(sms_consent=False, occurred_at=at(clock, -1)))
    app.events(shipment_event("in_transit", occurred_at=at(clock)))
    clock.advance(minutes=5)
    app.drain()
    assert fake_twilio.messages == []


def test_over_the_daily_cap_messages_merge_into_a_digest(app, clock, fake_twilio):
    for n, status in enumerate(["in_transit", "exception"]):
        app.events(shipment_event(status, shipment_id=f"s-{n}", occurred_at=at(clock, n * 120)))
        clock.advance(seconds=121)
        app.drain()
    assert len(fake_twilio.messages) == 2
    app.events(payment_event("failed", occurred_at=at(clock)))
    app.events(
        prescription_event("ready_for_pickup", prescription_id="rx-9", occurred_at=at(clock))
    )
    clock.advance(minutes=5)
    app.drain()
    assert len(fake_twilio.messages) == 2  # capped: nothing more today
    [digest] = app.rows(Message, Message.template == "notify_digest", Message.status == "pending")
    clock.now = next_morning_at_8(clock.now) + timedelta(seconds=1)
    app.drain()
    body = texts(fake_twilio)[-1]
    assert "A few updates" in body
    assert "didn't go through" in body and "ready for pickup" in body


def test_a_digest_says_alike_news_once_with_its_count(app, clock, fake_twilio):
    """Three prescriptions approved read alike on SMS (no medication names): one line, "(x3)".
    Approved is not yet sent to the pharmacy, and the line does not say it was."""
    for n, status in enumerate(["in_transit", "exception"]):
        app.events(shipment_event(status, shipment_id=f"s-{n}", occurred_at=at(clock, n * 120)))
        clock.advance(seconds=121)
        app.drain()
    for n in range(3):
        app.events(prescription_event("approved", prescription_id=f"rx-a{n}",
                                      occurred_at=at(clock)))  # fmt: skip
    app.events(payment_event("failed", occurred_at=at(clock)))
    clock.advance(minutes=5)
    app.drain()
    clock.now = next_morning_at_8(clock.now) + timedelta(seconds=1)
    app.drain()
    body = texts(fake_twilio)[-1]
    assert "A few updates" in body
    [approved] = [line for line in body.splitlines() if "was approved" in line]
    assert approved.endswith("(x3)"), body
    assert body.count("was approved") == 1 and "sent to" not in approved
    assert "didn't go through" in body


def test_telegram_blocked_falls_back_to_sms(app, clock, fake_twilio, fake_telegram, database):
    with database.session() as session:
        maria = patients.by_source_id(session, DEFAULT_ID, "p-1")
        maria.telegram_chat_id, maria.preferred_channel = "777", "telegram"
    fake_telegram.fail_for_chat(777, 403)
    app.events(shipment_event("in_transit", occurred_at=at(clock)))
    clock.advance(minutes=2)
    app.drain()
    app.drain()
    assert fake_telegram.calls_to("sendMessage")  # tried Telegram first
    [sms] = texts(fake_twilio)
    assert "shipped with UPS" in sms


def test_refill_reminder_then_yes_records_a_request(app, clock, fake_twilio):
    due = (clock.now + timedelta(days=5)).date().isoformat()
    app.events(prescription_event("delivered", next_refill_date=due, occurred_at=at(clock, -5000)))
    assert app.runtime.scheduler.run_once() == {"refill_due": 1}
    assert app.runtime.scheduler.run_once() == {}  # once only
    clock.advance(minutes=2)
    app.drain()
    assert "Reply YES" in texts(fake_twilio)[-1]
    app.sms("yes", sender=MARIA)
    app.drain()
    assert "asked for your refill" in texts(fake_twilio)[-1]
    [refill] = app.rows(Refill)
    assert (refill.status, refill.origin) == ("requested", "patient")


@on_both_databases
def test_another_patients_shipment_or_refill_naming_the_same_prescription_is_never_theirs(
    app, clock, fake_twilio
):
    """A source system's mistake (Bob's shipment and refill naming Maria's prescription id)
    must not put Bob's tracking in Maria's texts, nor hold back her refill reminder."""
    app.events(patient_event("p-2", first_name="Bob", phone="+1 555 010 0002",
                             occurred_at=at(clock, -600)))  # fmt: skip
    bobs = shipment_event("in_transit", shipment_id="ship-bob", patient_id="p-2",
                          tracking_number="1ZBOBSONLY0000001",
                          tracking_url="https://www.ups.com/track?tracknum=1ZBOBSONLY0000001",
                          occurred_at=at(clock, -500))  # fmt: skip
    app.events(bobs)
    due = (clock.now + timedelta(days=5)).date().isoformat()
    app.events(event("refill.updated", occurred_at=at(clock, -400), refill_id="rf-bob",
                     patient_id="p-2", prescription_id="rx-1", status="requested"))  # fmt: skip
    clock.advance(seconds=61)
    app.drain()
    before = len(fake_twilio.messages)
    app.events(prescription_event("shipped", next_refill_date=due, occurred_at=at(clock)))
    clock.advance(seconds=61)
    app.drain()
    marias = [m.body for m in fake_twilio.messages[before:] if m.to == MARIA]
    assert marias and all("1ZBOBSONLY" not in body for body in marias), marias
    assert app.runtime.scheduler.run_once() == {"refill_due": 1}


def test_renewal_reminder_three_days_before(app, clock, fake_twilio):
    from tests.builders import event

    renews = clock.now + timedelta(days=3, hours=-1)
    app.events(
        event(
            "subscription.updated",
            at(clock, -9000),
            subscription_id="sub-1",
            patient_id="p-1",
            plan="Monthly",
            amount_cents=29900,
            currency="USD",
            status="active",
            renews_at=renews.isoformat(),
            auto_renew=True,
        )  # fmt: skip
    )
    assert app.runtime.scheduler.run_once() == {"renewal": 1}
    clock.advance(minutes=2)
    app.drain()
    sms = texts(fake_twilio)[-1]
    day = renews.astimezone(CLINIC_ZONE)
    assert f"Your plan renews {day:%b} {day.day} for $299.00, your first renewal" in sms


def test_stuck_prescription_becomes_a_staff_item_and_one_patient_message(app, clock, fake_twilio):
    app.events(prescription_event("awaiting_provider", occurred_at=at(clock)))
    clock.advance(hours=25)
    assert app.runtime.scheduler.run_once() == {"stuck": 1}
    clock.advance(hours=5)
    assert app.runtime.scheduler.run_once() == {}
    clock.advance(minutes=2)
    app.drain()
    [handoff] = app.rows(Handoff)
    assert handoff.reason == "stuck" and not handoff.owns_conversation
    assert "awaiting_provider for 25 h" in handoff.summary
    stuck = [t for t in texts(fake_twilio) if "longer than usual" in t]
    assert len(stuck) == 1
    # The bot still answers the patient: a work item does not silence it.
    app.sms("hi", sender=MARIA)
    app.drain()
    assert "What do you need?" in texts(fake_twilio)[-1]


def test_sent_messages_are_on_the_timeline_and_in_the_snapshot(app, clock, fake_twilio):
    app.events(shipment_event("in_transit", occurred_at=at(clock)))
    clock.advance(minutes=2)
    app.drain()
    [entry] = app.rows(TimelineEntry, TimelineEntry.kind == "message_sent")
    assert entry.summary == "told the patient by sms: shipped"
    snap = app.client.get(
        "/api/patients/p-1/status", headers={"Authorization": "Bearer test-api-key"}
    ).json()
    assert snap["last_told"][0]["about"] == "notify_shipped"
    assert snap["last_told"][0]["status"] == "sent"


def test_denied_prescription_tells_staff_first(app, clock, fake_twilio):
    app.events(prescription_event("denied", occurred_at=at(clock)))
    [handoff] = app.rows(Handoff)
    assert handoff.reason == "prescription_denied" and handoff.priority == "high"
    clock.advance(minutes=5)
    app.drain()
    assert fake_twilio.messages == []  # staff get a head start to call
    clock.advance(minutes=30)
    app.drain()
    assert "call you soon" in texts(fake_twilio)[-1]


def appointment_in(clock, app, hours: float, appointment_id: str = "a-1"):
    from tests.builders import event

    starts = clock.now + timedelta(hours=hours)
    app.events(
        event(
            "appointment.updated",
            at(clock, -90000),
            appointment_id=appointment_id,
            patient_id="p-1",
            starts_at=starts.isoformat(),
            visit_type="Video visit",
            provider_name="Dr. Ana Patel",
            status="scheduled",
            join_url="https://visit.example/j/1",
        )  # fmt: skip
    )


def test_appointment_reminder_then_c_confirms(app, clock, fake_twilio):
    appointment_in(clock, app, hours=20)
    assert app.runtime.scheduler.run_once() == {"appointment": 1}
    clock.advance(minutes=2)
    app.drain()
    reminder = texts(fake_twilio)[-1]
    assert "Reminder: your Video visit" in reminder and "Reply C to confirm" in reminder
    assert "https://visit.example/j/1" in reminder
    app.sms("C", sender=MARIA)
    app.drain()
    assert "you're confirmed" in texts(fake_twilio)[-1]
    confirmed = app.rows(TimelineEntry, TimelineEntry.summary.like("patient confirmed%"))
    assert len(confirmed) == 1


def test_appointment_reminder_then_r_hands_to_scheduling(app, clock, fake_twilio):
    appointment_in(clock, app, hours=0.5)  # inside the hour: the 1 h reminder, sent at once
    assert app.runtime.scheduler.run_once() == {"appointment": 1}
    app.drain()
    assert "today" in texts(fake_twilio)[-1]
    app.sms("R", sender=MARIA)
    app.drain()
    [handoff] = app.rows(Handoff)
    assert (handoff.reason, handoff.queue) == ("reschedule", "scheduling")
