"""Durable inbound: a webhook stores the message and answers; the turn runs from the stored row."""

from __future__ import annotations

import asyncio
import itertools
import threading
from datetime import timedelta

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event, func, make_url, select, text

from bot import inbox
from bot.handoffs import Handoff, HandoffEntry
from bot.inbox import InboxMessage
from bot.messages import Message
from channels.turns import MAX_TRIES, Ready, TurnRunner
from status import clinics, patients
from status.clinics import DEFAULT_ID
from tests.conftest import on_both_databases
from tests.fakes.telegram_server import text_update

MARIA = "+15550100001"
JAMES = "+15550100002"


def break_timezone(app, source_id: str = "demo-maria") -> None:
    """Stored data the turn cannot render: a time zone that does not exist."""
    with app.db.session() as session:
        patients.by_source_id(session, DEFAULT_ID, source_id).timezone = "Mars/Olympus_Mons"


def a_verified_patient_whose_turns_fail(app) -> None:
    """Maria verifies, then her data breaks and her next message is stored, not yet turned."""
    app.sms("where is my prescription", sender=MARIA)
    app.sms("03/14/1985", sender=MARIA)
    app.drain()
    break_timezone(app)
    app.sms("when is my refill due", sender=MARIA, turn=False)


def sealed_column(app) -> list[str]:
    """What is on disk for the inbox rows, read with plain SQL."""
    with app.db.engine.connect() as conn:
        return [row[0] or "" for row in conn.execute(text("SELECT sealed FROM inbox ORDER BY id"))]


def retry_until_done(app, tries: int = MAX_TRIES) -> None:
    for step in range(tries + 1):
        app.drain(later=timedelta(minutes=step))


@on_both_databases
def test_the_webhook_only_stores_and_the_worker_answers(app, fake_twilio):
    assert app.sms("where is my prescription", sender=MARIA, turn=False).status_code == 200
    [row] = app.rows(InboxMessage)
    assert (row.state, row.outcome) == ("pending", None)
    assert app.count(Message) == 0 and fake_twilio.messages == []
    app.drain()
    [row] = app.rows(InboxMessage)
    [inbound] = app.rows(Message, Message.direction == "in")
    assert (row.state, row.outcome, row.message_id) == ("done", "answered", inbound.id)
    assert row.sealed is None
    assert "date of birth" in fake_twilio.messages[0].body


@on_both_databases
def test_one_conversation_is_answered_in_arrival_order(app, fake_twilio):
    # Stored before any turn runs: answered out of order, the date of birth would come first.
    app.sms("where is my prescription", sender=MARIA, turn=False)
    app.sms("where is my prescription", sender=JAMES, turn=False)
    app.sms("03/14/1985", sender=MARIA, turn=False)
    app.sms("11/02/1979", sender=JAMES, turn=False)
    app.sms("thanks", sender=MARIA, turn=False)
    app.drain()
    maria = [m.body for m in fake_twilio.messages if m.to == MARIA]
    assert "date of birth" in maria[0]
    assert "verified" in maria[1] and "UPS" in maria[1]
    assert len(maria) == 3
    james = [m.body for m in fake_twilio.messages if m.to == JAMES]
    assert "date of birth" in james[0] and "verified" in james[1]
    assert {r.outcome for r in app.rows(InboxMessage)} == {"answered"}


@on_both_databases
def test_card_numbers_and_dates_of_birth_are_never_on_disk(app, fake_twilio):
    app.sms("where is my prescription", sender=MARIA, turn=False)
    app.sms("03/14/1985", sender=MARIA, turn=False)
    app.sms("my card is 4111 1111 1111 1111 exp 04/27", sender=MARIA, turn=False)
    on_disk = " ".join(sealed_column(app))
    assert "1985" not in on_disk and "4111" not in on_disk
    stored = [inbox.unseal(app.settings.secret_key, r.sealed) for r in app.rows(InboxMessage)]
    assert stored[1]["text"] == "03/14/1985"  # sealed until its turn: verification needs it
    assert "4111" not in stored[2]["text"]
    app.drain()
    bodies = [m.body for m in app.rows(Message, Message.direction == "in")]
    assert bodies[1] == "[date of birth]"
    assert "4111" not in bodies[2] and "[card number removed]" in bodies[2]
    assert "deleted the card details" in fake_twilio.messages[-1].body
    assert sealed_column(app) == ["", "", ""]


@on_both_databases
def test_a_turn_that_keeps_failing_ends_in_a_holding_reply_and_a_handoff(app, fake_twilio):
    a_verified_patient_whose_turns_fail(app)
    app.drain()
    [row] = app.rows(InboxMessage, InboxMessage.outcome.is_(None))
    assert (row.state, row.attempts, row.error) == ("pending", 1, "ZoneInfoNotFoundError")
    assert len(fake_twilio.messages) == 2  # nothing yet: it will be tried again
    retry_until_done(app)
    [row] = app.rows(InboxMessage, InboxMessage.id == row.id)
    assert (row.state, row.outcome, row.attempts) == ("done", "held", MAX_TRIES)
    holding = fake_twilio.messages[-1]
    assert holding.to == MARIA and "We got your message" in holding.body
    assert len(fake_twilio.messages) == 3
    [handoff] = app.rows(Handoff)
    assert handoff.reason == "turn_failed" and row.error_id in handoff.summary
    [filed] = app.rows(HandoffEntry, HandoffEntry.kind == "message")
    [message] = app.rows(Message, Message.id == filed.message_id)
    assert message.body == "when is my refill due" and row.message_id == message.id
    # Staff own the conversation now: the next message is filed for them, not answered.
    app.sms("hello?", sender=MARIA)
    app.drain()
    assert app.rows(InboxMessage)[-1].outcome == "filed"
    assert len(fake_twilio.messages) == 3


@on_both_databases
def test_a_turn_that_fails_beside_others_undoes_none_of_theirs(app, fake_twilio):
    # Turns claimed together share a transaction: the one that fails must not take the
    # others' answers (or their rows' outcomes) with it, nor answer any of them twice.
    a_verified_patient_whose_turns_fail(app)
    others = [f"+1555010000{n}" for n in range(2, 7)]
    for sender in others:
        app.sms("where is my prescription", sender=sender, turn=False)
    app.drain()
    failed = app.rows(InboxMessage, InboxMessage.outcome.is_(None))
    assert [(r.address, r.state, r.attempts, r.error) for r in failed] == [
        (MARIA, "pending", 1, "ZoneInfoNotFoundError")
    ]
    assert sorted(m.to for m in fake_twilio.messages[2:]) == others  # one reply each
    assert len(fake_twilio.messages) == 2 + len(others)


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"clinic": "default", **labels}) or 0.0


@on_both_databases
def test_a_batch_run_again_turn_by_turn_counts_each_turn_once(app, fake_twilio):
    # The batch with the failing turn is rolled back and its turns run one by one: the counters
    # count what was committed, so the others' turns once each and the failing one not at all.
    a_verified_patient_whose_turns_fail(app)
    asked = ("ps_inbound_messages_total", {"channel": "sms", "intent": "prescription_status"})
    refills = ("ps_inbound_messages_total", {"channel": "sms", "intent": "refill"})
    replies = ("ps_replies_total", {"channel": "sms", "kind": "reply"})
    before = [counted(name, **labels) for name, labels in (asked, refills, replies)]
    others = [f"+1555010000{n}" for n in range(2, 7)]
    for sender in others:
        app.sms("where is my prescription", sender=sender, turn=False)
    app.drain()
    after = [counted(name, **labels) for name, labels in (asked, refills, replies)]
    assert [b - a for a, b in zip(before, after, strict=True)] == [5, 0, 5]


def test_the_holding_reply_speaks_the_patients_language(app, fake_twilio):
    luis = "+15550100004"
    app.sms("cuándo es mi resurtido", sender=luis)
    app.sms("05/30/1968", sender=luis)
    app.drain()
    break_timezone(app, "demo-luis")
    app.sms("cuándo es mi resurtido", sender=luis)
    retry_until_done(app)
    assert app.rows(InboxMessage)[-1].outcome == "held"
    assert "Recibimos su mensaje" in fake_twilio.messages[-1].body


def test_a_message_after_stop_is_deliberately_silent(app, fake_twilio):
    app.sms("STOP", sender=MARIA)
    app.sms("where is my prescription", sender=MARIA)
    app.drain()
    outcomes = [r.outcome for r in app.rows(InboxMessage)]
    assert outcomes == ["answered", "silent"]  # the STOP confirmation, then nothing
    assert len(fake_twilio.messages) == 1


def test_a_redelivered_message_is_stored_once(app, fake_twilio):
    app.sms("hello", sid="SM" + "b" * 32)
    app.sms("hello", sid="SM" + "b" * 32)
    assert app.count(InboxMessage) == 1
    app.drain()
    assert len(fake_twilio.messages) == 1


def test_a_telegram_update_that_cannot_be_handled_is_held_for_staff(app, fake_telegram):
    channel = app.runtime.telegram

    async def explode(handler, event, data):  # a middleware, aiogram's own extension point
        if getattr(event, "text", None) == "boom":
            raise RuntimeError("handler blew up")
        return await handler(event, data)

    channel.dispatcher.message.outer_middleware(explode)
    response = app.telegram(text_update(4242, "boom", update_id=90), turn=False)
    assert response.status_code == 200 and response.json()["outcome"] == "queued"
    retry_until_done(app)
    [row] = app.rows(InboxMessage)
    assert (row.outcome, row.error) == ("held", "RuntimeError")
    assert "We got your message" in fake_telegram.sent(4242)[0].params["text"]
    [handoff] = app.rows(Handoff)
    assert row.error_id in handoff.summary
    # Telegram redelivering it changes nothing.
    assert app.telegram(text_update(4242, "boom", update_id=90)).json()["outcome"] == "duplicate"


@pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_stored_message_wakes_workers_in_other_processes_once(database):
    listener = psycopg.connect(
        make_url(database.url).set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
    )
    listener.execute(f"LISTEN {inbox.NOTIFY_CHANNEL}")
    delivery = {
        "clinic": clinics.SmsRecipient(to="+15550001111"), "source": "twilio_sms",
        "provider_id": "SM-wake", "action": inbox.Action.SMS, "channel": "sms", "address": MARIA,
        "payload": {"text": "where is my order"},
    }  # fmt: skip
    try:
        assert inbox.store_now(database, "test-secret", **delivery) is True
        assert inbox.store_now(database, "test-secret", **delivery) is False  # redelivered
        heard = list(listener.notifies(timeout=1.0, stop_after=2))
    finally:
        listener.close()
    assert [n.channel for n in heard] == [inbox.NOTIFY_CHANNEL]
    with database.session() as session:
        row = session.query(InboxMessage).one()
    # a number no clinic claims is the default clinic's
    assert (row.clinic_id, row.address) == (DEFAULT_ID, MARIA)
    assert (row.state, row.attempts) == ("pending", 0)
    assert inbox.unseal("test-secret", row.sealed) == {"text": "where is my order"}


def sms_delivery(sid: str, **changes) -> dict:
    delivery = {
        "clinic": clinics.SmsRecipient(to="+15550001111"), "source": "twilio_sms",
        "provider_id": sid, "action": inbox.Action.SMS, "channel": "sms", "address": MARIA,
        "payload": {"text": "where is my order"},
    }  # fmt: skip
    return delivery | changes


@on_both_databases
def test_webhooks_stored_together_are_each_answered_for_their_own_row(database):
    async def burst():
        calls = [sms_delivery(f"SM-group-{n}") for n in range(20)]
        calls.append(sms_delivery("SM-group-3"))  # a redelivery inside the same group
        calls.append(sms_delivery("SM-no-clinic", clinic=999_999))  # no such clinic: refused
        try:
            return await asyncio.gather(
                *(inbox.store_soon(database, "test-secret", **call) for call in calls),
                return_exceptions=True,
            )
        finally:
            await inbox.GroupWriter.of(database).close()

    *stored, redelivered, refused = asyncio.run(burst())
    assert stored == [True] * 20 and redelivered is False
    assert isinstance(refused, Exception)  # only its own webhook fails (a 5xx), nothing else
    with database.session() as session:
        ids = session.scalars(select(InboxMessage.provider_id).order_by(InboxMessage.id)).all()
    assert ids == [f"SM-group-{n}" for n in range(20)]


def test_a_webhook_waits_for_sqlites_write_lock_without_blocking_the_loop(database):
    held, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:  # as an in-process turn's transaction does
        with database.session() as session:
            session.execute(text("UPDATE clinics SET name = name"))
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    held.wait(5)

    async def store_meanwhile() -> tuple[bool, int]:
        store = asyncio.create_task(
            inbox.store_soon(database, "test-secret", **sms_delivery("SM-wait"))
        )
        ticks = 0
        for _ in range(20):  # the loop keeps serving other requests while the webhook waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not store.done()
        release.set()
        return await asyncio.wait_for(store, 5), ticks

    try:
        stored, ticks = asyncio.run(store_meanwhile())
    finally:
        release.set()
        holder.join()
    assert (stored, ticks) == (True, 20)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(InboxMessage)) == 1


# --- the claim: one conversation's turns in arrival order, whatever the backlog ----------------
LUIS = "+15550100003"
SIDS = itertools.count()


def stored(app, sender: str, texts: list[str]) -> list[int]:
    """Messages from `sender` stored as the webhook stores them, not yet turned: their ids."""
    for text_ in texts:
        sid = f"SM-backlog-{next(SIDS)}"
        delivery = sms_delivery(sid, address=sender, payload={"text": text_})
        assert inbox.store_now(app.db, app.settings.secret_key, **delivery)
    rows = app.rows(InboxMessage, InboxMessage.address == sender)
    return [row.id for row in rows[-len(texts) :]]


def runner(app, name: str, **options) -> TurnRunner:
    return TurnRunner(app.runtime, worker_id=name, clock=app.runtime.turns.clock, **options)


def turned_bodies(app, sender: str) -> list[str]:
    """What `sender` wrote, in the order the turns stored it."""
    return [m.body for m in app.rows(Message, Message.direction == "in", Message.address == sender)]


@on_both_databases
def test_a_long_backlog_is_answered_in_arrival_order_per_conversation(app, fake_twilio):
    # Three patients' messages interleaved, more than a claim's pages of rows: every claim
    # takes at most one message of a conversation, its oldest unfinished one.
    texts = {sender: [f"{name} {n}" for n in range(60)] for sender, name in
             ((MARIA, "maria"), (JAMES, "james"), (LUIS, "luis"))}  # fmt: skip
    ids = {sender: [] for sender in texts}
    for n in range(60):
        for sender, own in texts.items():
            ids[sender] += stored(app, sender, [own[n]])
    one, two = runner(app, "one"), runner(app, "two")
    assert [c.id for c in one.claim()] == [ids[MARIA][0], ids[JAMES][0], ids[LUIS][0]]
    assert two.claim() == []  # every conversation's head is held by `one`
    app.drain(later=timedelta(seconds=app.settings.worker_lease_seconds + 1))  # a takeover
    for sender, own in texts.items():
        assert turned_bodies(app, sender) == own
    assert {r.state for r in app.rows(InboxMessage)} == {"done"}


@on_both_databases
def test_a_conversation_whose_head_another_worker_holds_waits_and_holds_no_one_back(
    app, fake_twilio
):
    maria = stored(app, MARIA, [f"maria {n}" for n in range(200)])  # pages of her messages
    luis = stored(app, LUIS, ["luis 0", "luis 1"])
    one, two = runner(app, "one", batch_size=1), runner(app, "two")
    assert [c.id for c in one.claim()] == [maria[0]]
    # Her 199 others wait behind the message `one` holds; Luis's first goes, not his second.
    assert [c.id for c in two.claim()] == [luis[0]]
    assert two.claim() == []
    # `one` died: once its lease runs out another worker takes her message over, and only it.
    later = app.runtime.turns.clock() + timedelta(seconds=app.settings.worker_lease_seconds + 1)
    three = runner(app, "three")
    assert [(c.id, c.attempts) for c in three.claim(later)] == [(maria[0], 0), (luis[0], 0)]
    app.drain(later=timedelta(seconds=3 * app.settings.worker_lease_seconds))  # after `three`
    assert turned_bodies(app, MARIA) == [f"maria {n}" for n in range(200)]
    assert turned_bodies(app, LUIS) == ["luis 0", "luis 1"]


@on_both_databases
def test_a_message_waits_while_the_one_before_it_backs_off(app, fake_twilio):
    a_verified_patient_whose_turns_fail(app)
    app.sms("thanks", sender=MARIA, turn=False)
    app.sms("where is my prescription", sender=JAMES, turn=False)
    app.drain()  # Maria's turn fails and backs off; James is answered
    assert [m.to for m in fake_twilio.messages[2:]] == [JAMES]
    waiting = app.rows(InboxMessage, InboxMessage.address == MARIA, InboxMessage.state != "done")
    assert [(r.state, r.attempts) for r in waiting] == [("pending", 1), ("pending", 0)]
    retry_until_done(app)
    assert turned_bodies(app, MARIA)[-2:] == ["when is my refill due", "thanks"]


@on_both_databases
def test_a_batchs_messages_are_written_together_numbered_in_the_order_they_were_made(
    app, fake_twilio
):
    # Three patients' second turns in one transaction: on PostgreSQL their six messages are
    # numbered by one statement and written by one executemany; on both, the ids grow in the
    # order the turns made them (each question before its answer, turn after turn), the order
    # the dispatcher sends a conversation's messages in.
    senders = [MARIA, JAMES, LUIS]
    for sender in senders:
        app.sms("hi", sender=sender)
    before = app.rows(Message)[-1].id
    for sender in senders:
        stored(app, sender, ["where is my prescription"])
    one = runner(app, "one")
    ready = [Ready(claimed, one.payload(claimed)) for claimed in one.claim()]
    inserts: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO messages"):
            inserts.append(statement)

    event.listen(app.db.engine, "before_cursor_execute", seen)
    try:
        assert one.run_batch(ready) == ["answered"] * 3
    finally:
        event.remove(app.db.engine, "before_cursor_execute", seen)
    if not app.db.is_sqlite:
        assert len(inserts) == 1
        assert "RETURNING" not in inserts[0]
    written = app.rows(Message, Message.id > before)
    assert [(m.address, m.direction) for m in written] == [
        (sender, direction) for sender in senders for direction in ("in", "out")
    ]
    assert [m.body for m in written if m.direction == "in"] == ["where is my prescription"] * 3
