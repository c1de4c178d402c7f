"""Exactly once to the provider, through crashes and outages; the order the outbox sends in."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest

from bot import outbox
from bot.handoffs import Handoff
from bot.messages import Kind, Message
from channels.dispatcher import Dispatcher, Pacer
from status.clinics import DEFAULT_ID
from status.db import utcnow
from tests.conftest import on_both_databases

MARIA = "+15550100001"


def lease(app) -> timedelta:
    """Just past a claim's lease: when another worker may take a crashed worker's messages."""
    return timedelta(seconds=app.settings.worker_lease_seconds + 1)


def crash_after_sending(app) -> Message:
    """A dispatcher claims the reply and Twilio accepts it, then the process dies before the
    acceptance is recorded (nothing after the provider call runs)."""
    dispatcher = app.runtime.dispatcher
    [claimed] = dispatcher.claim()

    async def send():
        sender = app.runtime.senders["sms"]
        callback = dispatcher._status_callback(claimed)
        return await sender.send(claimed.address, claimed.body, status_callback=callback)

    assert app.client.portal.call(send).ok
    [row] = app.rows(Message, Message.id == claimed.id)
    assert row.status == "sending" and row.provider_id is None
    return row


@on_both_databases
def test_a_send_accepted_before_a_crash_is_reconciled_not_sent_again(app, fake_twilio):
    app.sms("hi", sender=MARIA)
    crash_after_sending(app)
    app.drain(later=lease(app))  # another dispatcher, once the lease ran out
    assert len(fake_twilio.messages) == 1
    [reply] = app.rows(Message, Message.direction == "out")
    assert (reply.status, reply.provider_id) == ("sent", fake_twilio.messages[0].sid)


def test_a_send_that_never_reached_the_provider_is_sent_after_the_lease(app, fake_twilio):
    app.sms("hi", sender=MARIA)
    app.runtime.dispatcher.claim()  # claimed, then the process died before calling Twilio
    app.drain()
    assert fake_twilio.messages == []  # the lease still holds
    app.drain(later=lease(app))
    [sent] = fake_twilio.messages
    [reply] = app.rows(Message, Message.direction == "out")
    assert (reply.status, reply.provider_id) == ("sent", sent.sid)


def test_an_identical_earlier_message_is_not_mistaken_for_the_one_in_doubt(app, fake_twilio):
    app.sms("hi", sender=MARIA)
    app.drain()
    app.sms("hi", sender=MARIA)  # the same words, the same reply text
    app.runtime.dispatcher.claim()  # dies before calling Twilio
    app.drain(later=lease(app))
    assert len(fake_twilio.messages) == 2
    assert len({r.provider_id for r in app.rows(Message, Message.direction == "out")}) == 2


def test_the_status_callback_records_an_acceptance_the_sender_never_recorded(app, fake_twilio):
    app.sms("hi", sender=MARIA)
    row = crash_after_sending(app)
    sid = fake_twilio.messages[0].sid
    assert f"outbox_id={row.id}" in fake_twilio.messages[0].status_callback
    assert app.status_callback(fake_twilio.signed_status_callback(sid, "sent")).status_code == 204
    [reply] = app.rows(Message, Message.id == row.id)
    assert (reply.status, reply.provider_id) == ("sent", sid)
    app.drain(later=lease(app))
    assert len(fake_twilio.messages) == 1


@on_both_databases
def test_a_claim_whose_lease_is_nearly_over_is_not_sent_and_goes_back_to_the_queue(
    app, fake_twilio
):
    """A dispatcher slowed past its lease (a stalled claim, a busy host) must not send: another
    may already have taken the message over, found nothing at Twilio and sent it."""
    app.sms("hi", sender=MARIA)
    dispatcher = app.runtime.dispatcher
    [claimed] = dispatcher.claim()
    late = replace(claimed, deadline=time.monotonic() + 0.2)
    assert app.client.portal.call(dispatcher._send_one, late) == "released"
    assert fake_twilio.messages == []
    [row] = app.rows(Message, Message.id == claimed.id)
    assert (row.status, row.claimed_by) == ("pending", None)
    app.drain()  # no lease to wait for: it was given back
    [sent] = fake_twilio.messages
    [reply] = app.rows(Message, Message.direction == "out")
    assert (reply.status, reply.provider_id) == ("sent", sent.sid)


@on_both_databases
def test_a_send_that_timed_out_after_twilio_accepted_it_is_reconciled_not_sent_again(
    app, fake_twilio
):
    """A timeout is not a refusal: Twilio may have the message. It is looked up before any
    resend (before, it went back to `pending` and the patient got it twice)."""
    app.sms("hi", sender=MARIA)
    dispatcher = app.runtime.dispatcher
    [claimed] = dispatcher.claim()
    fake_twilio.stall_next(1.5)  # answers after the send is cut off, but creates the message
    short = replace(claimed, deadline=time.monotonic() + 1.2)  # 0.7 s to send in
    assert app.client.portal.call(dispatcher._send_one, short) == "in_doubt"
    fake_twilio.wait_for(1, timeout=5)
    [row] = app.rows(Message, Message.id == claimed.id)
    assert (row.status, row.claimed_by, row.provider_id) == ("sending", None, None)
    app.drain(later=timedelta(minutes=1))  # past the backoff: reconciled, not sent again
    assert len(fake_twilio.messages) == 1
    [reply] = app.rows(Message, Message.direction == "out")
    assert (reply.status, reply.provider_id) == ("sent", fake_twilio.messages[0].sid)


@on_both_databases
def test_a_five_minute_outage_is_ridden_out_every_message_sent_once(app, fake_twilio):
    senders = [f"+1555020{n:04d}" for n in range(12)]
    fake_twilio.outage(500)
    for sender in senders:
        app.sms("hello", sender=sender)
    for second in range(0, 301, 15):  # five minutes of the provider answering 500
        app.drain(later=timedelta(seconds=second))
    assert fake_twilio.messages == []
    assert {m.status for m in app.rows(Message, Message.direction == "out")} == {"pending"}
    fake_twilio.recover()
    app.drain(later=timedelta(minutes=11))  # past the longest backoff
    counts = Counter(m.to for m in fake_twilio.messages)
    assert sorted(counts) == sorted(senders) and set(counts.values()) == {1}
    assert {m.status for m in app.rows(Message, Message.direction == "out")} == {"sent"}
    assert app.count(Handoff) == 0


def test_an_appointment_reminder_is_cancelled_rather_than_sent_after_the_visit(app, fake_twilio):
    now = utcnow()
    with app.db.session() as session:
        outbox.enqueue(
            session, clinic_id=DEFAULT_ID,
            channel="sms", address=MARIA, body="Reminder: your visit is at 3:00 PM.",
            kind=Kind.PROACTIVE, template="remind_appointment",
            expires_at=now + timedelta(minutes=30), now=now,
        )  # fmt: skip
    fake_twilio.outage(503)
    app.drain()
    app.drain(later=timedelta(minutes=31))
    fake_twilio.recover()
    app.drain(later=timedelta(hours=1))
    assert fake_twilio.messages == []
    [reminder] = app.rows(Message)
    assert (reminder.status, reminder.error_code) == ("cancelled", "expired")


def test_an_update_superseded_while_it_waited_is_cancelled(app, fake_twilio):
    now = utcnow()
    fake_twilio.outage(503)
    with app.db.session() as session:
        outbox.enqueue(
            session, clinic_id=DEFAULT_ID, channel="sms", address=MARIA, body="Your order shipped.",
            kind=Kind.PROACTIVE, template="notify_shipped", coalesce_key="1:shipment:s1", now=now,
        )  # fmt: skip
    app.drain()  # tried once, failed, waiting to retry
    with app.db.session() as session:
        outbox.enqueue(
            session, clinic_id=DEFAULT_ID,
            channel="sms", address=MARIA, body="Your order was delivered.",
            kind=Kind.PROACTIVE, template="notify_delivered", coalesce_key="1:shipment:s1",
            now=now,
        )  # fmt: skip
    fake_twilio.recover()
    app.drain(later=timedelta(minutes=10))
    assert [m.body for m in fake_twilio.messages] == ["Your order was delivered."]
    first = app.rows(Message)[0]
    assert (first.status, first.error_code) == ("cancelled", "superseded")


# --- the order of sending -------------------------------------------------------------------------
def write(app, kind, body, *, urgent=False, template=None, to=MARIA, not_before=None) -> int:
    with app.db.session() as session:
        message = outbox.enqueue(
            session, clinic_id=DEFAULT_ID,
            channel="sms", address=to, body=body, kind=kind, urgent=urgent,
            template=template, not_before=not_before,
        )  # fmt: skip
        session.flush()
        return message.id


def patient(n: int) -> str:
    """Another patient's number (the updates that drain beside Maria's reply)."""
    return f"+1555020{n:04d}"


@pytest.fixture
def one_at_a_time(app):
    """A dispatcher that sends one message at a time, so the fake sees the sending order."""
    return Dispatcher(app.settings, app.db, app.runtime.senders, concurrency=1)


def test_the_outbox_sends_emergency_reply_staff_update_then_digest(app, fake_twilio, one_at_a_time):
    write(app, Kind.PROACTIVE, "reminder", template="remind_refill_due")
    write(app, Kind.PROACTIVE, "digest", template="notify_digest")
    write(app, Kind.PROACTIVE, "update", template="notify_shipped")
    write(app, Kind.STAFF, "staff")
    write(app, Kind.REPLY, "reply")
    write(app, Kind.REPLY, "emergency", urgent=True)
    app.client.portal.call(one_at_a_time.drain)
    order = [m.body for m in fake_twilio.messages]
    assert order[:4] == ["emergency", "reply", "staff", "update"]
    assert sorted(order[4:]) == ["digest", "reminder"]


def test_a_reply_is_the_next_message_the_number_sends_while_updates_drain(
    app, fake_twilio, one_at_a_time
):
    app.settings.twilio_messages_per_second = 20  # paced: two messages claimed at a time
    for n in range(30):
        write(app, Kind.PROACTIVE, f"update {n}", template="notify_shipped", to=patient(n))
    app.client.portal.call(one_at_a_time.run_once)
    sent_before = len(fake_twilio.messages)
    assert sent_before == 2
    app.sms("where is my prescription", sender=MARIA)  # the patient writes meanwhile
    app.client.portal.call(one_at_a_time.run_once)
    assert "date of birth" in fake_twilio.messages[sent_before].body


@on_both_databases
def test_a_reply_written_after_an_update_was_claimed_for_the_slot_takes_that_slot(
    app, fake_twilio, one_at_a_time
):
    app.settings.twilio_messages_per_second = 0.5  # a slot every 2 s: room for a busy host
    for n in range(3):
        write(app, Kind.PROACTIVE, f"update {n}", template="notify_shipped")
    dispatcher = one_at_a_time

    async def reply_while_update_1_waits_for_its_slot():
        started = time.monotonic()
        await dispatcher.run_once()  # update 0 leaves now; the number's next slot is 2 s away
        seen = dispatcher._written
        [held] = await asyncio.to_thread(dispatcher.claim)  # update 1, for that slot
        await asyncio.to_thread(write, app, Kind.REPLY, "reply")  # the patient's turn ends
        dispatcher.written()  # as the turn runner's `Runtime.notify`
        status = await dispatcher._send_one(held, seen)
        return started, time.monotonic() - started, held, status

    started, reply_after, held, status = app.client.portal.call(
        reply_while_update_1_waits_for_its_slot
    )
    assert status == "sent"
    assert [m.body for m in fake_twilio.messages] == ["update 0", "reply"]
    assert reply_after < 1.8  # at once, in the slot update 1 gave up, not at its start (2 s)
    [update_1] = app.rows(Message, Message.id == held.id)
    assert (update_1.status, update_1.attempts, update_1.claimed_by) == ("pending", 0, None)
    app.client.portal.call(dispatcher.drain)
    assert [m.body for m in fake_twilio.messages] == ["update 0", "reply", "update 1", "update 2"]
    # the headroom is paid back: update 1 one interval after the given-up slot, update 2 next
    assert time.monotonic() - started >= 5.8
    assert Counter(m.status for m in app.rows(Message)) == {"sent": 4}


@pytest.mark.anyio
async def test_a_numbers_pace_gives_a_reply_one_send_of_headroom_and_takes_it_back():
    pacer, number, interval = Pacer(), [("sms:+15550009999", 10.0)], 10.0
    first = await pacer.reserve(number)  # an update, now
    assert await pacer.reserve(number, urgent=True) == pytest.approx(first, abs=0.5)  # at once
    assert await pacer.reserve(number) == pytest.approx(first + 2 * interval)  # paid back
    assert await pacer.reserve(number, urgent=True) == pytest.approx(first + 2 * interval)
    assert await pacer.reserve(number, urgent=True) == pytest.approx(first + 3 * interval)
    assert await pacer.reserve(number) == pytest.approx(first + 5 * interval)


# --- one address's messages leave one at a time, in order ----------------------------------------
def dispatchers(app, *names):
    return [Dispatcher(app.settings, app.db, app.runtime.senders, worker_id=n) for n in names]


def to_maria(fake_twilio) -> list[str]:
    return [m.body for m in fake_twilio.messages if m.to == MARIA]


@on_both_databases
def test_a_patients_second_message_waits_while_her_first_is_in_flight(app, fake_twilio):
    first = write(app, Kind.REPLY, "first")
    write(app, Kind.REPLY, "second")
    luis = write(app, Kind.REPLY, "for luis", to=patient(1))
    one, two = dispatchers(app, "one", "two")
    assert sorted(c.id for c in one.claim()) == [first, luis]  # Maria's first and Luis's
    assert two.claim() == []  # another dispatcher: her second waits for her first


@on_both_databases
def test_one_claims_concurrent_sends_deliver_a_patients_messages_in_order(app, fake_twilio):
    for n in range(5):
        write(app, Kind.REPLY, f"part {n}")
        write(app, Kind.REPLY, f"luis {n}", to=patient(1))
    [dispatcher] = dispatchers(app, "one")
    rounds = []
    while handled := app.client.portal.call(dispatcher.run_once):
        rounds.append(handled)
    assert rounds == [2] * 5  # each round: one of Maria's and one of Luis's, side by side
    assert to_maria(fake_twilio) == [f"part {n}" for n in range(5)]


@on_both_databases
def test_a_more_urgent_message_overtakes_a_waiting_update_but_not_one_in_flight(
    app, fake_twilio
):
    update = write(app, Kind.PROACTIVE, "update", template="notify_shipped")
    one, two = dispatchers(app, "one", "two")
    [claimed] = one.claim()  # the update is in flight
    assert claimed.id == update
    reply = write(app, Kind.REPLY, "reply")
    assert two.claim() == []  # the reply goes after what is already on its way
    one.release(claimed)  # the update went back to the queue unsent
    assert [c.id for c in two.claim()] == [reply]  # the reply's lane is first


@on_both_databases
def test_an_update_held_for_later_does_not_hold_back_a_reply_but_a_failed_try_does(
    app, fake_twilio
):
    morning = app.runtime.dispatcher.clock() + timedelta(hours=8)
    write(app, Kind.PROACTIVE, "tomorrow morning", template="notify_shipped", not_before=morning)
    write(app, Kind.REPLY, "answer")
    fake_twilio.fail_next(status=500)  # the answer's first try fails: it backs off
    app.drain()
    assert to_maria(fake_twilio) == []
    write(app, Kind.REPLY, "follow-up")  # written while the answer backs off
    app.drain()
    assert to_maria(fake_twilio) == []  # it does not overtake the answer
    app.drain(later=timedelta(minutes=10))
    assert to_maria(fake_twilio) == ["answer", "follow-up"]
    [held] = app.rows(Message, Message.body == "tomorrow morning")
    assert held.status == "pending"  # still waiting for the morning


@on_both_databases
def test_a_send_in_doubt_and_a_newer_reply_do_not_hold_each_other_back(app, fake_twilio):
    update = write(app, Kind.PROACTIVE, "update", template="notify_shipped")
    [one] = dispatchers(app, "one")
    one.claim()  # the update is claimed, then its dispatcher dies before sending
    write(app, Kind.REPLY, "reply")  # more urgent, written meanwhile
    app.drain(later=lease(app))  # another dispatcher, once the lease ran out
    assert to_maria(fake_twilio) == ["update", "reply"]  # the one in flight is settled first
    [row] = app.rows(Message, Message.id == update)
    assert row.status == "sent"


@on_both_databases
def test_a_long_queue_to_one_address_does_not_hold_back_the_others(app, fake_twilio):
    app.settings.twilio_messages_per_second = 0  # unpaced: a claim takes up to a batch
    with app.db.session() as session:  # e.g. a backlog of alerts to one staff number
        for n in range(250):  # more than a page of candidates
            outbox.enqueue(
                session, clinic_id=DEFAULT_ID, channel="sms", address=MARIA, body=f"alert {n}",
                kind=Kind.STAFF,
            )  # fmt: skip
    others = [write(app, Kind.PROACTIVE, "update", template="notify_shipped", to=patient(n))
              for n in range(3)]  # fmt: skip
    [dispatcher] = dispatchers(app, "one")
    claimed = dispatcher.claim()
    assert [c.address for c in claimed].count(MARIA) == 1
    assert sorted(c.id for c in claimed if c.address != MARIA) == others


def test_a_reply_written_while_the_updates_claim_ran_past_its_slot_still_takes_the_slot(
    app, fake_twilio, one_at_a_time
):
    app.settings.twilio_messages_per_second = 0.5  # a slot every 2 s
    for n in range(2):
        write(app, Kind.PROACTIVE, f"update {n}", template="notify_shipped", to=patient(n))
    dispatcher = one_at_a_time

    async def a_claim_that_ends_after_the_slot():
        await dispatcher.run_once()  # update 0 leaves now; the number's next slot is 2 s away
        seen = dispatcher._written  # as `run_once` before its claim
        [held] = await asyncio.to_thread(dispatcher.claim)  # update 1, for that slot
        await asyncio.to_thread(write, app, Kind.REPLY, "reply")  # the patient's turn ends
        dispatcher.written()  # ... while the claim is still running
        await asyncio.sleep(2.1)  # and the claim returns only after the slot opened
        return await dispatcher._send_one(held, seen)

    assert app.client.portal.call(a_claim_that_ends_after_the_slot) == "sent"
    assert [m.body for m in fake_twilio.messages] == ["update 0", "reply"]
