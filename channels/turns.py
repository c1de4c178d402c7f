"""The turn runner: answers what the webhooks stored in the inbox.

Claiming is like the outbox's: `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has one writer),
and a claim is a lease, so a worker that dies mid-turn leaves its rows to another once the lease
runs out. Only the oldest unfinished message of a conversation can be claimed (the due rows in
arrival order, then the few older unfinished ones of just their conversations:
`TurnRunner._heads_due`), so one conversation's turns run strictly in arrival order while
different conversations run in parallel. A turn runs in one transaction with its row's outcome:
it happens exactly once or not at all. Several turns of different conversations share a
transaction (`run_batch`, one commit for up to TURNS_PER_TRANSACTION); when one of them raises,
the whole transaction is rolled back and each of its turns runs again in a transaction of its
own, so the failing one cannot take the others' answers with it. A turn that raises is retried
with backoff; after the last try the patient gets a short holding reply and staff a hand-off
carrying the message and the error id.

Woken at once in-process by the webhooks (`Runtime.notify_inbox`), across processes by
PostgreSQL LISTEN/NOTIFY, and by a short poll as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import psycopg
from sqlalchemy import and_, bindparam, inspect, or_, select, text, tuple_, update
from sqlalchemy.orm import Session

from bot import context, conversations, handoffs, outbox
from bot.engine import Turn
from bot.handoffs import Reason
from bot.inbound import Inbound
from bot.inbox import (
    NOTIFY_CHANNEL,
    UNFINISHED,
    Action,
    InboxMessage,
    InboxState,
    Outcome,
    unfinished,
    unseal,
)
from bot.messages import Direction, Kind, Message
from bot.understanding.redact import redact_dates_of_birth
from channels.rounds import run_rounds
from status import patients as patient_queries
from status.db import utcnow

log = logging.getLogger("patient_status.turns")

MAX_TRIES = 5
TURNS_PER_TRANSACTION = 8  # a batch shares one transaction (one commit); a failing turn undoes it
BACKOFF_BASE = 0.5  # seconds: 0.5, 1, 2, 4 -> the holding reply about 8 s after the message
BACKOFF_CAP = 30.0
CLAIM_PAGES = 8  # pages of due rows read per claim while looking past those held back
POLL_SECONDS = 1.0  # the safety net under LISTEN/NOTIFY (and SQLite's only cross-process wake)


@dataclass(frozen=True)
class Claimed:
    id: int
    clinic_id: int
    action: str
    channel: str
    address: str
    provider_id: str
    sealed: str | None
    received_at: datetime
    attempts: int


@dataclass(frozen=True)
class Ready:
    """A claimed message with what its turn needs: the payload unsealed and, for Telegram, the
    update parsed (by the clinic's bot, `token`)."""

    claimed: Claimed
    payload: dict
    action: object = None
    token: str | None = None


_inbox = InboxMessage.__table__
# A turn's row, done, in the turn's transaction (`run_batch`: one executemany for the batch).
_FINISH = (
    update(_inbox)
    .where(_inbox.c.id == bindparam("row_id"))
    .values(
        state=InboxState.DONE,
        outcome=bindparam("outcome", type_=_inbox.c.outcome.type),
        attempts=_inbox.c.attempts + 1,
        sealed=None,  # the stored message (redacted) is what remains
        claimed_by=None,
        claimed_until=None,
        message_id=bindparam("message_id", type_=_inbox.c.message_id.type),
        handoff_id=bindparam("handoff_id", type_=_inbox.c.handoff_id.type),
        finished_at=bindparam("now", type_=_inbox.c.finished_at.type),
    )
)


# The claim's plans, whatever the statistics say: PostgreSQL reads an inbox it has no
# statistics for (freshly filled, autovacuum not yet run) as a few dozen rows, and then sorted
# every unfinished row rather than walk the index in order (18 ms with 45,000 waiting), or
# scanned them all once per conversation rather than probe its few (150 ms). In the claim's
# transaction only index scans and nested loops are left: its best plans at any size.
_INDEX_PLANS = text(
    "SELECT set_config('enable_sort', 'off', true), set_config('enable_hashjoin', 'off', true),"
    " set_config('enable_mergejoin', 'off', true), set_config('enable_seqscan', 'off', true),"
    " set_config('enable_bitmapscan', 'off', true), set_config('enable_material', 'off', true)"
)
# Of these conversations (with the id of a due message each), those with an older unfinished
# message: a probe of `ix_inbox_unfinished_address` per conversation.
_HELD_BACK = text(
    "SELECT k.clinic_id, k.channel, k.address"
    " FROM unnest(CAST(:clinic_ids AS integer[]), CAST(:channels AS varchar[]),"
    " CAST(:addresses AS varchar[]), CAST(:befores AS integer[]))"
    " AS k (clinic_id, channel, address, before)"
    " WHERE EXISTS (SELECT FROM inbox e WHERE e.address = k.address AND e.channel = k.channel"
    f" AND e.clinic_id = k.clinic_id AND e.id < k.before AND e.{UNFINISHED.text})"
)


def held_back(
    session: Session, first: dict[tuple[int, str, str], int]
) -> set[tuple[int, str, str]]:
    """Of these conversations (clinic, channel, address -> the id of a due message), those with
    an older unfinished message, in one statement: one probe of `ix_inbox_unfinished_address`
    each (on SQLite an OR of exact keys, which it reads by the index too)."""
    if not first:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        keys = list(first)
        rows = session.execute(_HELD_BACK, {
            "clinic_ids": [k[0] for k in keys], "channels": [k[1] for k in keys],
            "addresses": [k[2] for k in keys], "befores": [first[k] for k in keys],
        })  # fmt: skip
        return {(row.clinic_id, row.channel, row.address) for row in rows}
    c = _inbox.c
    older = select(c.clinic_id, c.channel, c.address).where(
        unfinished(c.state),
        or_(*(and_(c.address == address, c.channel == channel, c.clinic_id == clinic_id,
                   c.id < before)
              for (clinic_id, channel, address), before in first.items())),
    )  # fmt: skip
    return {(row.clinic_id, row.channel, row.address) for row in session.execute(older)}


def outcome_of(turn: Turn | None) -> Outcome:
    """What became of a message: a reply, filed for the person who owns it, or silence."""
    if turn is None or turn.replies:
        return Outcome.ANSWERED  # None: the channel answered itself (linking a Telegram chat)
    if turn.handoff is not None:
        return Outcome.FILED
    return Outcome.SILENT


class TurnRunner:
    def __init__(
        self,
        runtime,
        *,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        batch_size: int = 32,
        concurrency: int = 4,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.db = runtime.db
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}:t"
        self.clock = clock
        self.batch_size = batch_size
        self.concurrency = 1 if self.db.is_sqlite else concurrency
        self._executor: ThreadPoolExecutor | None = None
        self.lease = timedelta(seconds=self.settings.worker_lease_seconds)
        self.wake = asyncio.Event()
        self._listening = threading.Event()

    # --- database side (sync, run in the turn threads) -----------------------------------------
    def claim(self, now: datetime | None = None) -> list[Claimed]:
        """Up to `batch_size` due messages, each the oldest unfinished one of its conversation,
        leased to this worker (`_heads_due`, then one UPDATE of those rows)."""
        now = now or self.clock()
        with self.db.session() as session:
            heads = self._heads_due(session, now)
            if not heads:
                return []
            statement = (
                update(_inbox)
                .where(_inbox.c.id.in_(heads))
                .values(state=InboxState.WORKING, claimed_by=self.worker_id,
                        claimed_until=now + self.lease)
                .returning(_inbox.c.id, _inbox.c.clinic_id, _inbox.c.action, _inbox.c.channel,
                           _inbox.c.address, _inbox.c.provider_id, _inbox.c.sealed,
                           _inbox.c.received_at, _inbox.c.attempts)
            )  # fmt: skip
            claimed = [Claimed(*row) for row in session.execute(statement)]
        return sorted(claimed, key=lambda one: one.id)

    def _heads_due(self, session: Session, now: datetime) -> list[int]:
        """The ids of up to `batch_size` due messages (locked, on PostgreSQL) that are each the
        oldest unfinished message of their conversation, in arrival order.

        Two simple statements a page instead of one anti-join: the due rows in id order
        (`ix_inbox_unfinished_id`, `FOR UPDATE SKIP LOCKED`: rows another worker is claiming
        are passed over), then, for each conversation in the page, its unfinished rows older
        than its first there (`ix_inbox_unfinished_address`, one probe a conversation: they
        are the few that hold it back). A conversation's first due row is its head when
        nothing older is unfinished: a later message waits while an earlier one of its
        conversation is leased to a worker, backing off for its next try, or being claimed
        right now. The anti-join this replaces cost time in proportion to the backlog (110 ms
        a claim with 15,000 messages waiting); these read about a page of rows whatever the
        backlog.

        The next page is read only when rows that are not heads filled this one, and leaves out
        the conversations already seen (each has its head chosen or is held back), so one
        conversation with thousands of messages waiting behind its head costs a claim one scan
        of its rows in the database, and holds no other conversation back."""
        if not self.db.is_sqlite:
            session.execute(_INDEX_PLANS)
        columns = (_inbox.c.id, _inbox.c.clinic_id, _inbox.c.channel, _inbox.c.address)
        due = or_(
            and_(_inbox.c.state == InboxState.PENDING,
                 or_(_inbox.c.next_attempt_at.is_(None), _inbox.c.next_attempt_at <= now)),
            and_(_inbox.c.state == InboxState.WORKING, _inbox.c.claimed_until < now),
        )  # fmt: skip
        conversation = tuple_(_inbox.c.clinic_id, _inbox.c.channel, _inbox.c.address)
        page = 2 * self.batch_size
        heads: list[int] = []
        seen: set[tuple[int, str, str]] = set()
        after = 0
        for _ in range(CLAIM_PAGES):
            query = select(*columns).where(unfinished(_inbox.c.state), due, _inbox.c.id > after)
            if seen:
                query = query.where(conversation.not_in(sorted(seen)))
            query = query.order_by(_inbox.c.id).limit(page)
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
            first: dict[tuple[int, str, str], int] = {}
            for row in rows:
                first.setdefault((row.clinic_id, row.channel, row.address), row.id)
            for key in held_back(session, first):
                del first[key]
            for head in sorted(first.values()):
                heads.append(head)
                if len(heads) == self.batch_size:
                    return heads
            seen.update((row.clinic_id, row.channel, row.address) for row in rows)
            if len(rows) < page:
                break
            after = rows[-1].id
        return heads

    def _own(self, session: Session, claimed: Claimed) -> InboxMessage | None:
        """The row, locked, if it is still ours (a lease that ran out may have passed it on)."""
        row = session.get(InboxMessage, claimed.id, with_for_update=not self.db.is_sqlite)
        if row is None or row.state != InboxState.WORKING or row.claimed_by != self.worker_id:
            return None
        return row

    def payload(self, claimed: Claimed) -> dict:
        return unseal(self.settings.secret_key, claimed.sealed) if claimed.sealed else {}

    def run_turn(self, claimed: Claimed, payload: dict, action=None) -> str:
        """One turn and its row's outcome, in one transaction; 'lost' if the row is not ours."""
        return self.run_batch([Ready(claimed, payload, action)])[0]

    def run_batch(self, batch: list[Ready]) -> list[str]:
        """Several turns and their rows' outcomes in one transaction (one commit for all, the
        rows locked by one statement, the outcomes written by one). All or nothing: when a turn
        raises, nothing of the batch is kept and the exception propagates; the caller then
        runs each turn in a transaction of its own (`run_turn`, with its retries)."""
        now = self.clock()
        inbox = InboxMessage.__table__
        with self.db.session() as session:
            # The batch's rows go in one INSERT per row, not one of many rows: psycopg caches
            # the conversion of a statement of at most 50 parameters and prepares it after a few
            # runs, and re-parses a longer one every time (14 % of a worker's CPU at 16 rows).
            session.connection(execution_options={"insertmanyvalues_page_size": 1})
            mine = select(inbox.c.id).where(
                inbox.c.id.in_([ready.claimed.id for ready in batch]),
                inbox.c.state == InboxState.WORKING,
                inbox.c.claimed_by == self.worker_id,
            )
            if not self.db.is_sqlite:
                mine = mine.with_for_update()
            ours = set(session.scalars(mine))
            outcomes: list[str] = []
            played: list[tuple[int, Turn | None, Outcome]] = []
            for ready in batch:
                claimed = ready.claimed
                if claimed.id not in ours:
                    outcomes.append("lost")  # its lease ran out and another worker has it
                    continue
                turn, outcome = self._play(session, claimed, ready.payload, ready.action)
                outcomes.append(outcome)
                played.append((claimed.id, turn, outcome))
            # the turns' messages and changes, written together (a statement per table and
            # kind of change rather than three flushes a turn), then the rows' outcomes
            if not self.db.is_sqlite:
                number_messages(session)
            session.flush()
            finished = [
                {
                    "row_id": row_id,
                    "outcome": str(outcome),
                    "message_id": turn.inbound.id if turn is not None else None,
                    "handoff_id": turn.handoff.id if turn and turn.handoff else None,
                    "now": now,
                }
                for row_id, turn, outcome in played
            ]
            if finished:
                session.execute(_FINISH, finished)
        return outcomes

    def _play(
        self, session: Session, claimed: Claimed, payload: dict, action
    ) -> tuple[Turn | None, Outcome]:
        """The turn of one stored message, in the caller's transaction."""
        if claimed.action == Action.TELEGRAM and action is None:
            return None, Outcome.SILENT  # nothing we act on (an edit, a sticker)
        if claimed.action == Action.TELEGRAM:
            turn = self.runtime.telegram.perform(
                session, action, int(claimed.provider_id), claimed.clinic_id
            )
            return turn, outcome_of(turn)
        inbound = Inbound(
            claimed.channel, claimed.address, payload.get("text") or "",
            claimed.provider_id, claimed.received_at, tuple(payload.get("media") or ()),
            clinic_id=claimed.clinic_id,
            origin="page" if claimed.action == Action.PAGE else "channel",
            about_patient_id=payload.get("patient_id"),
        )  # fmt: skip
        turn = self.runtime.engine.handle(session, inbound)
        return turn, outcome_of(turn)

    def _finish(self, row: InboxMessage, outcome: Outcome) -> None:
        row.state = InboxState.DONE
        row.outcome = outcome
        row.attempts += 1
        row.sealed = None  # the stored message (redacted) is what remains
        row.claimed_by = row.claimed_until = None
        row.finished_at = self.clock()

    def fail(self, claimed: Claimed, payload: dict, exc: BaseException, error_id: str) -> str:
        """Record a failed try: back off and retry, or after the last try hold and hand off."""
        now = self.clock()
        with self.db.session() as session:
            row = self._own(session, claimed)
            if row is None:
                return "lost"
            row.error_id = error_id
            row.error = type(exc).__name__[:300]
            if row.attempts + 1 < MAX_TRIES:
                row.attempts += 1
                row.state = InboxState.PENDING
                delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (row.attempts - 1))
                row.next_attempt_at = now + timedelta(seconds=delay)
                row.claimed_by = row.claimed_until = None
                return "retry"
            self._hold(session, row, payload, error_id, now)
            return Outcome.HELD

    def _hold(
        self, session: Session, row: InboxMessage, payload: dict, error_id: str, now: datetime
    ) -> None:
        """The turn cannot run: tell the patient we have it, give it to staff with the error id."""
        clinic = self.runtime.engine.profiles.get(session, row.clinic_id)
        conv = conversations.get_or_create(session, row.clinic_id, row.channel, row.address)
        people = patient_queries.by_address(session, row.clinic_id, row.channel, row.address)
        patient = people[0] if len(people) == 1 else None
        text = text_of(row.action, payload)
        message = Message(
            clinic_id=row.clinic_id,
            conversation_id=conv.id,
            patient_id=patient.id if patient else None,
            direction=Direction.IN,
            kind=Kind.REPLY,
            channel=row.channel,
            address=row.address,
            body=redact_dates_of_birth(text, row.received_at.date()),  # as the engine keeps it
            provider_id=row.provider_id[:64],
            media=list(payload.get("media") or []),
            created_at=row.received_at,
        )
        session.add(message)
        session.flush()
        try:  # the packet is a courtesy: the data that broke the turn may break it too
            with session.begin_nested():
                packet = context.build(session, patient, conv, now)
        except Exception:
            packet = {}
        handoff, created = handoffs.open_or_add(
            session,
            clinic_id=row.clinic_id,
            reason=Reason.TURN_FAILED,
            now=now,
            patient_id=patient.id if patient else None,
            conversation_id=conv.id,
            summary=f"could not answer a message automatically (error {error_id})",
            context=lambda: packet,
            settings=clinic.settings,
        )
        message.handoff_id = handoff.id
        handoffs.add_entry(session, handoff, "message", message_id=message.id, now=now)
        for listener in self.runtime.engine.handoff_listeners:
            listener(session, handoff, Reason.TURN_FAILED, created)
        if not conv.opted_out:
            lang = conv.language or (patient.language if patient else None) or "en"
            outbox.enqueue(
                session, clinic_id=row.clinic_id, channel=row.channel, address=row.address,
                kind=Kind.REPLY, body=clinic.renderer.render("holding_reply", lang, row.channel),
                conversation_id=conv.id, patient_id=patient.id if patient else None,
                template="holding_reply", language=lang, handoff_id=handoff.id, now=now,
            )  # fmt: skip
        row.message_id = message.id
        row.handoff_id = handoff.id
        self._finish(row, Outcome.HELD)

    # --- the loop (async) ----------------------------------------------------------------------
    async def _in_thread(self, fn, *args):
        if self._executor is None:  # turns have threads of their own, not the shared pool
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="turn")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _ready(self, claimed: Claimed) -> Ready:
        payload = self.payload(claimed)
        if claimed.action != Action.TELEGRAM:
            return Ready(claimed, payload)
        # the clinic's own bot: a button's spinner is stopped by the bot that showed it
        token = await self._in_thread(self.runtime.telegram.token_of, claimed.clinic_id)
        action = await self.runtime.telegram.parse(payload["update"], token)
        return Ready(claimed, payload, _received_at(action, claimed.received_at), token)

    async def _prepare(self, claimed: Claimed) -> Ready | str:
        """The message ready for its turn, or what became of it when even that failed."""
        try:
            return await self._ready(claimed)
        except Exception as exc:
            return await self._failed(claimed, exc)

    async def _turn(self, ready: Ready) -> str:
        """One turn in a transaction of its own; a failure is recorded (retry, or hold)."""
        claimed = ready.claimed
        started = time.perf_counter()
        try:
            outcome = await self._in_thread(self.run_turn, claimed, ready.payload, ready.action)
        except Exception as exc:
            return await self._failed(claimed, exc)
        await self._done(ready, outcome, started)
        return outcome

    async def _batch(self, batch: list[Ready]) -> list[str]:
        """Turns in one transaction; if one raises, each runs again in its own (`_turn`)."""
        if len(batch) == 1:
            return [await self._turn(batch[0])]
        started = time.perf_counter()
        try:
            outcomes = await self._in_thread(self.run_batch, batch)
        except Exception as exc:
            log.info(
                "a turn of a batch failed; its turns run one by one",
                extra={"inbox_ids": [ready.claimed.id for ready in batch],
                       "error": type(exc).__name__},
            )  # fmt: skip
            return list(await asyncio.gather(*(self._turn(ready) for ready in batch)))
        for ready, outcome in zip(batch, outcomes, strict=True):
            await self._done(ready, outcome, started)
        return outcomes

    async def _done(self, ready: Ready, outcome: str, started: float) -> None:
        await self.runtime.telegram.answer_pressed(ready.action, ready.token)
        log.info(
            "inbox turn",
            extra={"inbox_id": ready.claimed.id, "outcome": outcome,
                   "ms": round((time.perf_counter() - started) * 1000, 1)},
        )  # fmt: skip

    async def _failed(self, claimed: Claimed, exc: Exception) -> str:
        error_id = uuid.uuid4().hex[:12]
        log.error(
            "turn failed",
            exc_info=exc,
            extra={"inbox_id": claimed.id, "error_id": error_id, "attempt": claimed.attempts + 1},
        )
        try:
            payload = self.payload(claimed)
        except Exception:
            payload = {}
        try:
            return await self._in_thread(self.fail, claimed, payload, exc, error_id)
        except Exception:
            log.exception("could not record a failed turn", extra={"inbox_id": claimed.id})
            return "unrecorded"

    async def run_once(self) -> int:
        """Claim a batch and run its turns: one per conversation, split into up to
        `concurrency` transactions of at most TURNS_PER_TRANSACTION turns, run in parallel."""
        claimed = await self._in_thread(self.claim)
        if claimed:
            prepared = await asyncio.gather(*(self._prepare(c) for c in claimed))
            ready = [one for one in prepared if isinstance(one, Ready)]
            await asyncio.gather(*(self._batch(batch) for batch in self._split(ready)))
            self.runtime.notify()  # new outbox rows
        return len(claimed)

    def _split(self, ready: list[Ready]) -> list[list[Ready]]:
        if not ready:
            return []
        count = max(-(-len(ready) // TURNS_PER_TRANSACTION), min(self.concurrency, len(ready)))
        size = -(-len(ready) // count)
        return [ready[i : i + size] for i in range(0, len(ready), size)]

    async def drain(self, timeout: float = 30.0) -> None:
        """Run turns until none is due (tests, the demo)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and await self.run_once():
            pass

    async def run_forever(self, stop: asyncio.Event, idle: float = POLL_SECONDS) -> None:
        if not self.db.is_sqlite:  # other processes' new rows arrive by NOTIFY
            loop = asyncio.get_running_loop()
            threading.Thread(
                target=self._listen, args=(loop, stop), name="inbox-listen", daemon=True
            ).start()
        await run_rounds(self.run_once, self.wake, stop, idle, log, "turn")

    def _listen(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        """LISTEN for new inbox rows written by other processes; wake the loop on each."""
        url = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not stop.is_set() and not loop.is_closed():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listening.set()
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            with contextlib.suppress(RuntimeError):  # the loop closed
                                loop.call_soon_threadsafe(self.wake.set)
            except Exception:
                self._listening.clear()
                log.warning("inbox LISTEN connection lost; reconnecting")
                time.sleep(1.0)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


# A batch's new messages numbered by one statement, in the order they were made, before its flush.
_NEXT_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, :n)"
)


def number_messages(session: Session) -> None:
    """Give the session's new messages their ids from the sequence in one statement, in the
    order they were made, so the flush writes them as one executemany (no RETURNING): the
    ORM otherwise inserts each row by a statement of its own to read its id back, two a turn.
    The ids are taken at the flush, as RETURNING takes them, so they still grow in the order
    the messages were written (the dispatcher's send order within a conversation)."""
    new = sorted(
        (one for one in session.new if isinstance(one, Message) and one.id is None),
        key=lambda one: inspect(one).insert_order,
    )
    if len(new) < 2:  # one row: its INSERT ... RETURNING is one statement already
        return
    with session.no_autoflush:  # the new rows must not be written before they are numbered
        ids = sorted(session.scalars(_NEXT_IDS, {"n": len(new)}))
    for message, id_ in zip(new, ids, strict=True):
        message.id = id_


def _received_at(action, received_at: datetime):
    """A Telegram text turn happens at the time the message arrived, as an SMS turn does."""
    inbound = getattr(action, "inbound", None)
    if isinstance(inbound, Inbound):
        return replace(action, inbound=replace(inbound, received_at=received_at))
    return action


def text_of(action: str, payload: dict) -> str:
    """What the patient wrote, for staff when the turn could not run."""
    if action in (Action.SMS, Action.PAGE):
        return payload.get("text") or ""
    update = payload.get("update") or {}
    message = update.get("message") or {}
    if message:
        return message.get("text") or message.get("caption") or ""
    return (update.get("callback_query") or {}).get("data") or ""
