"""The outbox dispatcher: sends what the engine and the rules wrote, exactly once.

Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL (and SQLite's single writer), so several
dispatcher processes can share one outbox. A claim is a lease: a dispatcher that dies mid-send
leaves rows that another picks up when the lease runs out. Such a row may have been accepted by
the provider before the crash, so it is reconciled before it is sent again (Twilio: the message
is looked up by recipient and body; Telegram has no lookup, so the rare duplicate is accepted).
Each acceptance is recorded as soon as the provider returns, on threads of its own.

Order: by lane (emergency, replies to a patient who just wrote, staff, updates, digests and
reminders), then age. SMS is claimed only as fast as the number's pacing lets it leave, so a
reply written while thousands of updates drain is the next message that number sends: an update
already claimed and waiting for the number's next slot gives that slot to a reply written
meanwhile (`Dispatcher.swap`, woken in-process by `written`) and goes back to the queue.
One address's messages leave one at a time and in that order (`holds_back`): a
message is claimed only when nothing to its address is in flight and nothing before it (by lane,
then age) is waiting to go, so two dispatchers, or one claim's concurrent sends, never deliver a
later reply first.

Transient failures (network, 5xx, 429) are retried with capped backoff for SEND_RETRY_HOURS;
only a permanent error (or the end of that budget) fails a message. A message that outlived its
use (an appointment reminder after the appointment, an update superseded by a newer one) is
cancelled rather than sent late. Every message ends in a recorded final state: sent/delivered,
logged (log mode), failed (with the provider's code) or cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Row, and_, exists, or_, select, tuple_
from sqlalchemy.orm import Session, aliased

from bot import conversations
from bot.clinic import Profiles
from bot.conversations import Conversation
from bot.delivery import delivery_failed
from bot.messages import UNSENT, Direction, Kind, Lane, Message, OutStatus
from channels.rounds import run_rounds
from channels.senders.base import Origin, SendResult
from channels.senders.twilio_sms import LogSmsSender
from status import clinics, metrics
from status.db import Database, utcnow
from status.settings import Settings

log = logging.getLogger("patient_status.dispatch")

RECORD_PATIENCE = 45.0  # seconds to keep trying to record a send: well inside the lease
# A send starts only while its claim holds with this margin (other hosts' clocks, the claim's
# commit) and is cut off before the lease runs out: a dispatcher taking over an expired claim
# reconciles with the provider, which is only sound if the first send has finished by then.
LEASE_MARGIN = 0.5  # seconds
MIN_SEND_WINDOW = 0.5  # seconds of lease left below which a claimed message is not sent
BACKOFF_BASE = 2.0  # seconds: 2, 4, 8, 16, 32 ... up to the cap, until SEND_RETRY_HOURS
BACKOFF_CAP = 300.0
SMS_HORIZON = 0.1  # seconds of paced SMS claimed at a time (at least one message)
LOCAL_CHANNELS = {"terminal", "simulator"}  # delivered by being stored: the page reads them


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    address: str
    body: str
    buttons: list
    kind: str
    attempts: int
    patient_id: int | None
    conversation_id: int | None
    reconcile: bool = False  # the lease ran out mid-send: the provider may have accepted it
    claimed_since: datetime | None = None  # when the earlier send may have happened
    origin: Origin | None = None  # the clinic's number or bot it is sent as
    priority: int = Lane.UPDATE  # its lane
    clinic_id: int | None = None
    deadline: float = math.inf  # `time.monotonic()` when the claim's lease runs out, at the latest
    slug: str | None = None  # the clinic's, when claimed (the label of its send metrics)


class Pacer:
    """Minimum spacing between sends per key (a Telegram chat, all of Telegram, an SMS number)."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def wait(self, keys: list[tuple[str, float]]) -> None:
        delay = await self.reserve(keys) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def reserve(self, keys: list[tuple[str, float]], *, urgent: bool = False) -> float:
        """The start of the next slot free for every key (`time.monotonic()`), now taken: the
        caller sends then (or a little later, inside it).

        Each key is a bucket two sends deep, refilled one send per interval: an ordinary send
        waits until it is full (one send per interval), an `urgent` one (a reply) may take the
        send of headroom, one interval early, and the next ordinary send pays it back."""
        async with self._lock:
            now = time.monotonic()
            start = max([now, *(self._next.get(key, now) for key, _ in keys)])
            if urgent:
                start = max(now, self.early(keys, start))
            for key, interval in keys:
                if interval > 0:
                    self._next[key] = max(self._next.get(key, start), start) + interval
        return start

    @staticmethod
    def early(keys: list[tuple[str, float]], slot: float) -> float:
        """When an urgent send may take `slot`, an ordinary send's: one interval sooner."""
        return slot - max((interval for _, interval in keys), default=0.0)

    def started(self, keys: list[tuple[str, float]], at: float) -> None:
        """A send reserved earlier began only `at` (it waited for a more urgent message to be
        claimed in its place): the next slot is one interval after that."""
        for key, interval in keys:
            if interval > 0:
                self._next[key] = max(self._next.get(key, at), at + interval)


ORDER_PAGES = 4  # pages of due messages read per claim while looking past held-back ones


def pending_due(now: datetime) -> ColumnElement[bool]:
    return and_(
        Message.status == OutStatus.PENDING,
        or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
    )


def _sending_order(message: Message | Unsent) -> tuple[int, int]:
    return message.priority, message.id


def holds_back(other: Unsent, message: Message | Unsent, now: datetime) -> bool:
    """Whether `other`, an unsent message to the same address, must leave before `message`:
    it is in flight (`sending`, which includes a send in doubt until it is reconciled), or, for
    a pending message, it is pending and due before it in the sending order (lane, then id). A
    message scheduled for later that was never tried (an update held for quiet hours) does not
    hold back what is written after it; one backing off after a failed try does, so the order
    survives a provider's bad minutes. A message itself in flight (to reconcile) waits only for
    older ones in flight, so two of them never hold each other back."""
    if other.id == message.id:
        return False
    if other.status == OutStatus.SENDING:
        return message.status == OutStatus.PENDING or other.id < message.id
    return (
        message.status == OutStatus.PENDING
        and (other.priority, other.id) < _sending_order(message)
        and (other.next_attempt_at is None or other.next_attempt_at <= now or other.attempts > 0)
    )


def takes_headroom(claimed: Claimed) -> bool:
    """A reply or emergency SMS may use a number's one send of headroom (`Pacer.reserve`)."""
    return claimed.channel == "sms" and claimed.priority <= Lane.REPLY


def _outcome(result: SendResult) -> str:
    if result.ok:
        return "logged" if result.status == "logged" else "sent"
    return "retry" if result.retryable else "failed"


FailureHook = Callable[[Session, Message, SendResult], None]


Conversations = dict[tuple[int, str, str], Conversation | None]
Address = tuple[int, str, str]  # clinic, channel, address
Unsent = Row[tuple[int, int, str, str, str, int, datetime | None, int]]
# What orders and holds back unsent messages (`holds_back`), read without the rest of the row.
UNSENT_COLUMNS = (
    Message.id, Message.clinic_id, Message.channel, Message.address, Message.status,
    Message.priority, Message.next_attempt_at, Message.attempts,
)  # fmt: skip


def _settle(future: asyncio.Future[str], outcome: str | BaseException) -> None:
    if future.done():  # its sender was cancelled (shutting down)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        senders: dict,
        *,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        batch_size: int = 50,
        concurrency: int = 10,
        profiles: Profiles | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.senders = senders
        self.profiles = profiles or Profiles(settings)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.clock = clock
        self.batch_size = batch_size
        self.semaphore = asyncio.Semaphore(concurrency)
        self.pacer = Pacer()
        self.failure_hooks: list[FailureHook] = []  # permanent failures (fallback, staff alerts)
        self.sent_hooks: list[Callable[[Session, Message], None]] = []
        self.lease = timedelta(seconds=settings.worker_lease_seconds)
        self.wake = asyncio.Event()
        self._more = asyncio.Event()  # set (and replaced) when new rows are written
        self._written = 0  # how many times
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recorders: ThreadPoolExecutor | None = None
        self._to_record: list[tuple[Claimed, SendResult, asyncio.Future[str]]] = []
        self._recording: asyncio.Task[None] | None = None

    # --- database side (sync, run in a thread) -------------------------------------------------
    def claim(self, now: datetime | None = None) -> list[Claimed]:
        return self._claim(now)[0]

    def _claim(self, now: datetime | None = None) -> tuple[list[Claimed], int]:
        """The messages claimed for sending, and how many due rows were claimed and settled
        at once instead (cancelled, failed before sending, delivered locally): a cancelled
        message may have been holding back the next one to its address."""
        deadline = time.monotonic() + self.lease.total_seconds()  # before the lease is written
        now = now or self.clock()
        lanes = [
            # SMS leaves at the number's pace: claim only what goes out in the next moment,
            # so what is written meanwhile (a reply) is claimed next, ahead of older updates.
            (Message.channel == "sms", self._sms_batch()),
            (Message.channel != "sms", self.batch_size),
        ]
        due = [
            pending_due(now),
            and_(Message.status == OutStatus.SENDING, Message.claimed_until < now),  # in doubt
        ]
        claimed, settled = [], 0
        with self.db.session() as session:
            for lane, limit in lanes:
                messages = self._due_in_order(session, [lane], due, limit, now)
                addresses = self._conversations(session, messages)
                for message in messages:
                    one = self._claim_one(session, message, now, deadline, addresses)
                    if one is not None:
                        claimed.append(one)
                    else:
                        settled += 1
        return claimed, settled

    def _due_in_order(
        self,
        session: Session,
        where: list[ColumnElement[bool]],
        due: list[ColumnElement[bool]],
        limit: int,
        now: datetime,
        giving_back: int | None = None,
    ) -> list[Message]:
        """Up to `limit` due messages (locked) in sending order, each one no other message to
        its address holds back (`holds_back`). Each status in `due` is read by its own
        statement, which walks `ix_messages_status_priority_id` in order and stops at the page
        (one OR over both made PostgreSQL sort every due row); the unsent messages of the page's
        addresses are then read in one statement, and the next page is read only when held-back
        messages filled this one. Two simple statements instead of an anti-join: with the
        statistics of a freshly filled outbox PostgreSQL planned that join as a scan of every
        unsent row per candidate (58 s for 10,000 queued). `giving_back`: a message of ours,
        claimed and not yet sent, that goes back to the queue in the same transaction
        (`swap`), so holds nothing back."""
        page = max(4 * limit, 20)
        chosen: list[int] = []
        after: tuple[int, int] | None = None
        for _ in range(ORDER_PAGES):
            rows: list[Unsent] = []
            for status in due:
                query = select(*UNSENT_COLUMNS).where(
                    Message.direction == Direction.OUT, status, *where
                )
                if after is not None:
                    query = query.where(tuple_(Message.priority, Message.id) > after)
                query = query.order_by(Message.priority, Message.id).limit(page)
                if not self.db.is_sqlite:
                    query = query.with_for_update(skip_locked=True)
                rows += session.execute(query)
            rows = sorted(rows, key=_sending_order)[:page]
            unsent = self._unsent_of(session, rows, giving_back)
            for row in rows:
                key = (row.clinic_id, row.channel, row.address)
                if not any(holds_back(other, row, now) for other in unsent.get(key, ())):
                    chosen.append(row.id)
                    if len(chosen) == limit:
                        break
            if len(chosen) == limit or len(rows) < page:
                break
            after = _sending_order(rows[-1])
        return self._whole(session, chosen)

    @staticmethod
    def _whole(session: Session, ids: list[int]) -> list[Message]:
        """The chosen messages as rows to change, in the order chosen. The page was read as
        the few columns that order it (and locked): a whole message is 36 columns, and a page
        is four times the messages claimed."""
        if not ids:
            return []
        found = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
        return [found[i] for i in ids]

    @staticmethod
    def _unsent_of(
        session: Session, messages: list[Unsent], giving_back: int | None
    ) -> dict[Address, list[Unsent]]:
        """The unsent messages to these messages' addresses, by address, in one statement
        (`ix_messages_unsent_address`, a partial index of unsent rows)."""
        if not messages:
            return {}
        # Only what can hold one of them back (`holds_back`): a message in flight, or one due
        # before the last of them; not the rest of a long queue to the same addresses.
        last = max(_sending_order(m) for m in messages)
        query = select(*UNSENT_COLUMNS).where(
            Message.address.in_({m.address for m in messages}),
            UNSENT,
            Message.direction == Direction.OUT,
            or_(Message.status == OutStatus.SENDING, tuple_(Message.priority, Message.id) < last),
        )  # fmt: skip
        found: dict[Address, list[Unsent]] = {}
        for row in session.execute(query):
            if row.id != giving_back:
                found.setdefault((row.clinic_id, row.channel, row.address), []).append(row)
        return found

    def _sms_batch(self) -> int:
        rate = self.settings.twilio_messages_per_second
        return self.batch_size if rate <= 0 else max(1, int(rate * SMS_HORIZON))

    @staticmethod
    def _origin(settings: Settings) -> Origin:
        """The clinic's sender: its number or messaging service, its bot."""
        return Origin(
            sms_from=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            telegram_token=settings.telegram_bot_token,
        )

    @staticmethod
    def _conversations(session: Session, messages: list[Message]) -> Conversations:
        """The conversations of these messages' addresses, in one statement (send-time
        consent checks)."""
        keys = {(m.clinic_id, m.channel, m.address) for m in messages}
        if not keys:
            return {}
        query = select(Conversation).where(
            tuple_(Conversation.clinic_id, Conversation.channel, Conversation.address).in_(keys)
        )
        found: Conversations = dict.fromkeys(keys)
        for conv in session.scalars(query):
            found[(conv.clinic_id, conv.channel, conv.address)] = conv
        return found

    def _claim_one(
        self,
        session: Session,
        message: Message,
        now: datetime,
        deadline: float,
        addresses: Conversations | None = None,
    ) -> Claimed | None:
        profile = self.profiles.get(session, message.clinic_id)
        origin = self._origin(profile.settings)
        if self._cancel_if_not_allowed(session, message, now, origin, addresses):
            return None
        if message.channel in LOCAL_CHANNELS:
            message.status = OutStatus.DELIVERED
            message.sent_at = message.delivered_at = message.status_updated_at = now
            return None
        in_doubt = message.status == OutStatus.SENDING and message.claimed_until is not None
        since = message.claimed_until - self.lease if in_doubt else None
        message.status = OutStatus.SENDING
        message.claimed_by = self.worker_id
        message.claimed_until = now + self.lease
        sender = self.senders.get(message.channel)
        return Claimed(
            message.id,
            message.channel,
            message.address,
            message.body,
            message.buttons or [],
            message.kind,
            message.attempts,
            message.patient_id,
            message.conversation_id,
            reconcile=in_doubt and hasattr(sender, "find_sent"),
            claimed_since=since,
            origin=origin,
            priority=message.priority,
            clinic_id=message.clinic_id,
            deadline=deadline,
            slug=profile.slug,
        )

    def swap(self, held: Claimed, now: datetime | None = None) -> Claimed | None:
        """A more urgent SMS of the clinic (a reply) written after `held` was claimed for the
        number's next slot: claim it and put `held` back in the queue as it was (pending, its
        attempts untouched), in one transaction. None: there is none, or `held` is no longer
        ours to give back (then it is sent as claimed)."""
        deadline = time.monotonic() + self.lease.total_seconds()
        now = now or self.clock()
        more_urgent = [
            Message.channel == "sms",
            Message.clinic_id == held.clinic_id,
            Message.priority < held.priority,
        ]
        with self.db.session() as session:
            found = self._due_in_order(session, more_urgent, [pending_due(now)], 1, now, held.id)
            if not found:
                return None
            urgent = found[0]
            mine = self._mine(session, held.id)
            if mine is None:
                return None
            taken = self._claim_one(session, urgent, now, deadline)
            if taken is None:
                return None  # cancelled or delivered locally: `held` keeps the slot
            mine.status = OutStatus.PENDING
            mine.claimed_by = mine.claimed_until = None
            return taken

    def _cancel_if_not_allowed(
        self,
        session: Session,
        message: Message,
        now: datetime,
        origin: Origin,
        addresses: Conversations | None = None,
    ) -> bool:
        """Send-time checks: consent may have changed since the message was written."""
        reason = None
        sender = self.senders.get(message.channel)
        if message.channel not in LOCAL_CHANNELS and (
            sender is None
            # a real provider and a clinic without its own number or bot: never another's
            or (not isinstance(sender, LogSmsSender) and not origin.configured(message.channel))
        ):
            reason = "channel_not_configured"
        elif message.expires_at is not None and message.expires_at <= now:
            reason = "expired"  # e.g. an appointment reminder after the appointment
        elif self._superseded(session, message):
            reason = "superseded"
        elif message.kind not in (Kind.SYSTEM, Kind.STAFF_ALERT):
            key = (message.clinic_id, message.channel, message.address)
            if addresses is not None and key in addresses:
                conv = addresses[key]
            else:
                conv = conversations.find(session, *key)
            if conv is not None and conv.opted_out:
                reason = "opted_out"
            elif conv is not None and conv.bad_address:
                reason = "bad_address"
        if reason is None:
            return False
        cancelled = reason in ("opted_out", "expired", "superseded")
        message.status = OutStatus.CANCELLED if cancelled else OutStatus.FAILED
        message.error_code = reason
        message.status_updated_at = now
        return True

    @staticmethod
    def _superseded(session: Session, message: Message) -> bool:
        """An update held back by retries that a newer one about the same thing replaced."""
        if message.kind != Kind.PROACTIVE or not message.coalesce_key or not message.attempts:
            return False
        newer = aliased(Message)
        query = select(
            exists().where(
                newer.coalesce_key == message.coalesce_key,
                newer.id > message.id,
                newer.direction == Direction.OUT,
                newer.status != OutStatus.CANCELLED,
            )
        )
        return bool(session.scalar(query))

    def record_found(self, claimed: Claimed, sids: list[str], now: datetime | None = None) -> str:
        """Reconciling: the provider has the message already (a sid no other row holds) -> sent,
        without sending; otherwise 'not_found' and it is sent."""
        now = now or self.clock()
        with self.db.session() as session:
            message = self._mine(session, claimed.id)
            if message is None:
                return "lost"
            known = set(
                session.scalars(
                    select(Message.provider_id).where(
                        Message.provider_id.in_(sids), Message.id != message.id
                    )
                )
            ) if sids else set()  # fmt: skip
            sid = next((sid for sid in sids if sid not in known), None)
            if sid is None:
                return "not_found"
            message.status = OutStatus.SENT
            message.provider_id = sid
            message.sent_at = message.status_updated_at = now
            message.claimed_by = message.claimed_until = None
            metrics.SENDS.labels(
                claimed.channel, "reconciled", clinics.slug_of(session, message.clinic_id)
            ).inc()
            for hook in self.sent_hooks:
                hook(session, message)
            return "reconciled"

    def defer(self, claimed: Claimed, delay: float, now: datetime | None = None) -> None:
        """Could not reconcile now: stay in doubt (sending) and look again after `delay`."""
        now = now or self.clock()
        with self.db.session() as session:
            message = self._mine(session, claimed.id)
            if message is not None:
                message.claimed_by = None
                message.claimed_until = now + timedelta(seconds=delay)

    def release(self, claimed: Claimed, now: datetime | None = None) -> None:
        """Claimed but not sent (its lease ran too short): back to the queue at once, as it was
        (still in doubt if it was: the next claimer reconciles again)."""
        if claimed.reconcile:
            self.defer(claimed, 0.0, now)
            return
        with self.db.session() as session:
            message = self._mine(session, claimed.id)
            if message is not None:
                message.status = OutStatus.PENDING
                message.claimed_by = message.claimed_until = None

    def _mine(self, session: Session, message_id: int) -> Message | None:
        """The message, locked, if this dispatcher's claim on it still holds."""
        message = session.get(Message, message_id, with_for_update=not self.db.is_sqlite)
        return message if message is not None and message.claimed_by == self.worker_id else None

    def record(self, claimed: Claimed, result: SendResult, now: datetime | None = None) -> str:
        return self.record_all([(claimed, result)], now)[0]

    def record_all(
        self, sends: list[tuple[Claimed, SendResult]], now: datetime | None = None
    ) -> list[str]:
        """What the provider said about each of these sends, in one transaction: the rows read
        and locked by one statement, one commit for all (sends that returned together are
        recorded together: `_record`)."""
        now = now or self.clock()
        with self.db.session() as session:
            # A failure reads its clinic's settings: read once, before any change to flush. An
            # accepted send needs only its clinic's slug, which its claim carries.
            for clinic_id in {claimed.clinic_id for claimed, result in sends if not result.ok}:
                if clinic_id is not None:
                    clinics.held(session, clinic_id)
            query = (
                select(Message)
                .where(Message.id.in_([claimed.id for claimed, _ in sends]))
                .order_by(Message.id)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update()
            rows = {message.id: message for message in session.scalars(query)}
            return [
                self._recorded(session, rows.get(claimed.id), claimed, result, now)
                for claimed, result in sends
            ]

    def _recorded(
        self,
        session: Session,
        message: Message | None,
        claimed: Claimed,
        result: SendResult,
        now: datetime,
    ) -> str:
        if message is None or message.claimed_by != self.worker_id:
            return "lost"  # our lease ran out and another dispatcher took it over
        slug = claimed.slug or clinics.slug_of(session, message.clinic_id)
        message.attempts += 1
        message.claimed_by = None
        message.claimed_until = None
        message.status_updated_at = now
        message.error_code = result.error_code
        message.error_message = result.error_message
        metrics.SENDS.labels(claimed.channel, _outcome(result), slug).inc()
        if not result.ok:
            metrics.SEND_FAILURES.labels(claimed.channel, result.error_code or "unknown").inc()
        if result.ok:
            message.status = OutStatus.LOGGED if result.status == "logged" else OutStatus.SENT
            message.provider_id = result.provider_message_id
            message.sent_at = now
            for hook in self.sent_hooks:
                hook(session, message)
        elif result.retryable and now < self._give_up_at(message):
            backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(message.attempts - 1, 20))
            delay = max(backoff, result.retry_after or 0)
            sender = self.senders.get(claimed.channel)
            if result.maybe_accepted and hasattr(sender, "find_sent"):
                # In doubt: stays `sending`, unclaimed, and is reconciled before any resend.
                message.claimed_until = now + timedelta(seconds=delay)
                return "in_doubt"
            message.status = OutStatus.PENDING
            message.next_attempt_at = now + timedelta(seconds=delay)
        else:
            message.status = OutStatus.FAILED
            self._permanent(session, message, result, now)
        return message.status

    def _give_up_at(self, message: Message) -> datetime:
        """Transient failures are retried for a time budget from when the message was due."""
        due = max(message.created_at, message.not_before or message.created_at)
        return due + timedelta(hours=self.settings.send_retry_hours)

    def _permanent(self, session: Session, message: Message, result: SendResult, now) -> None:
        settings = self.profiles.get(session, message.clinic_id).settings
        delivery_failed(session, message, result.permanent_reason, result.error_code, now, settings)
        for hook in self.failure_hooks:
            hook(session, message, result)

    # --- sending (async) -----------------------------------------------------------------------
    def _pace_keys(self, claimed: Claimed) -> list[tuple[str, float]]:
        if claimed.channel == "telegram":
            return [(f"tg:{claimed.address}", 1.0), ("tg:*", 1 / 30)]
        rate = self.settings.twilio_messages_per_second
        key = claimed.origin.sms_key if claimed.origin is not None else "*"
        return [(f"sms:{key}", 1 / rate if rate > 0 else 0.0)]

    async def _reconcile(self, claimed: Claimed) -> str:
        """'reconciled' (already accepted: recorded, not sent), 'not_found' or 'deferred'."""
        sender = self.senders[claimed.channel]
        since = claimed.claimed_since or self.clock()
        try:
            sids = await sender.find_sent(claimed.address, claimed.body, since)
            return await self._db(self.record_found, claimed, sids)
        except Exception:
            log.warning("could not reconcile a send in doubt", extra={"message_id": claimed.id})
            with contextlib.suppress(Exception):
                await self._db(self.defer, claimed, BACKOFF_BASE * 5)
            return "deferred"

    async def _db(self, fn, *args):
        """Recording on threads of its own: never queued behind turns, webhooks or sends."""
        if self._recorders is None:
            self._recorders = ThreadPoolExecutor(4, thread_name_prefix="record")
        return await asyncio.get_running_loop().run_in_executor(self._recorders, fn, *args)

    async def _send_one(self, claimed: Claimed, seen: int = 0) -> str:
        sender = self.senders[claimed.channel]
        if claimed.reconcile:
            found = await self._reconcile(claimed)
            if found != "not_found":
                log.info("send in doubt", extra={"message_id": claimed.id, "status": found})
                return found
        async with self.semaphore:
            keys = self._pace_keys(claimed)
            slot = await self.pacer.reserve(keys, urgent=takes_headroom(claimed))
            held = claimed
            claimed = await self._hold(claimed, slot, seen, keys)
            if claimed is not held:  # the swap may have taken it past the slot's start
                self.pacer.started(keys, time.monotonic())
            sender = self.senders[claimed.channel]
            window = claimed.deadline - time.monotonic() - LEASE_MARGIN
            if window < MIN_SEND_WINDOW:
                return await self._release(claimed)
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(
                    sender.send(
                        claimed.address,
                        claimed.body,
                        buttons=claimed.buttons or None,
                        status_callback=self._status_callback(claimed),
                        origin=claimed.origin,
                    ),
                    None if math.isinf(window) else window,
                )
            except TimeoutError as exc:  # cut off before the lease ran out: it may have arrived
                log.warning("send cut off at the lease", extra={"message_id": claimed.id})
                result = SendResult.network_error(exc)
            except Exception as exc:
                log.exception("sender raised", extra={"message_id": claimed.id})
                result = SendResult(
                    ok=False,
                    error_code="exception",
                    error_message=type(exc).__name__,
                    retryable=True,
                )
        status = await self._record_patiently(claimed, result)
        log.info(
            "send",
            extra={
                "message_id": claimed.id,
                "channel": claimed.channel,
                "kind": claimed.kind,
                "attempt": claimed.attempts + 1,
                "status": status,
                "error_code": result.error_code,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return status

    async def _release(self, claimed: Claimed) -> str:
        log.warning("lease nearly over: not sent", extra={"message_id": claimed.id})
        with contextlib.suppress(Exception):  # else the lease runs out: reconciled, then sent
            await self._db(self.release, claimed)
        return "released"

    async def _hold(
        self, claimed: Claimed, slot: float, seen: int, keys: list[tuple[str, float]]
    ) -> Claimed:
        """Wait for the slot; an SMS held for it gives way to a more urgent one (a reply)
        written since the claim (`seen`: the count of `written` calls before it), which then
        takes the slot instead of waiting for the next.

        A reply (or emergency) handed the slot may use it at once rather than at its start:
        the number's pace is a bucket two sends deep, refilled one send per interval. Updates
        go only when it is full; a reply may take the one send of headroom, which the next
        update pays back (it still leaves one interval after the given-up slot). So the number
        never sends more than two messages within one interval, nor more than its rate over
        time, and a reply reaches the provider ahead of the next update, not a slot later."""
        # An unpaced number (a rate of 0) has no slot to give up: a reply written meanwhile is
        # claimed and sent beside this message, so there is nothing to look for.
        paced = any(interval > 0 for _, interval in keys)
        while paced and claimed.channel == "sms" and claimed.priority > Lane.EMERGENCY:
            if claimed.reconcile:
                break  # it was in doubt: sent as reconciled
            if self._written == seen:
                remaining = slot - time.monotonic()
                if remaining <= 0:
                    break  # its slot is now, and nothing was written since the claim began
                try:
                    await asyncio.wait_for(self._more.wait(), remaining)
                except TimeoutError:
                    break
            # Written since the claim began (while it ran, too: a claim slowed past the slot
            # is when a reply most often arrives): look, even if that takes us past the slot's
            # start (the send then starts later, and so does the number's next slot:
            # `Pacer.started`).
            seen = self._written
            try:
                swapped = await self._db(self.swap, claimed)
            except Exception:  # rolled back whole: the held message goes as claimed
                log.exception("could not hand the slot over", extra={"message_id": claimed.id})
                swapped = None
            if swapped is not None:
                log.info(
                    "slot given to a more urgent message",
                    extra={"message_id": swapped.id, "returned_id": claimed.id},
                )  # fmt: skip
                if takes_headroom(swapped) and not takes_headroom(claimed):
                    slot = self.pacer.early(keys, slot)
                claimed = swapped
        delay = slot - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return claimed

    def written(self) -> None:
        """New outbox rows (on the loop's thread): wake the loop, and an update held."""
        self.wake.set()
        self._written += 1
        more, self._more = self._more, asyncio.Event()
        more.set()

    async def _record(self, claimed: Claimed, result: SendResult) -> str:
        """Record a send with the others that returned meanwhile (group commit): while one
        transaction records, the sends returning wait for the next, which records them all."""
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._to_record.append((claimed, result, done))
        if self._recording is None or self._recording.done():
            self._recording = asyncio.create_task(self._record_rounds())
        return await done

    async def _record_rounds(self) -> None:
        while self._to_record:
            group, self._to_record = self._to_record, []
            try:
                statuses = await self._db(self.record_all, [(c, r) for c, r, _ in group])
            except Exception as exc:
                if len(group) == 1:
                    _settle(group[0][2], exc)
                    continue
                # one of them may be what fails: each in a transaction of its own
                for claimed, result, done in group:
                    try:
                        _settle(done, await self._db(self.record, claimed, result))
                    except Exception as each:
                        _settle(done, each)
                continue
            for (_, _, done), status in zip(group, statuses, strict=True):
                _settle(done, status)

    async def _record_patiently(self, claimed: Claimed, result: SendResult) -> str:
        """Record what the provider said, retrying while our lease holds: a send the provider
        accepted but we failed to record would be sent again once the lease ran out."""
        deadline = time.monotonic() + RECORD_PATIENCE
        delay = 0.2
        while True:
            try:
                return await self._record(claimed, result)
            except Exception:
                if time.monotonic() + delay > deadline:
                    log.exception("could not record a send", extra={"message_id": claimed.id})
                    return "unrecorded"
                log.warning("recording a send failed; retrying", extra={"message_id": claimed.id})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _status_callback(self, claimed: Claimed) -> str | None:
        """Twilio's delivery callbacks carry our id, so even a send whose acceptance we never
        recorded is matched to its row."""
        if claimed.channel != "sms" or not self.settings.public_base_url:
            return None
        base = self.settings.public_base_url.rstrip("/")
        return f"{base}/webhooks/twilio/status?outbox_id={claimed.id}"

    async def run_once(self) -> int:
        """Claim one batch and send it; the number of messages handled."""
        if self._loop is not asyncio.get_running_loop():  # a new loop (an app started again)
            self._loop, self._more = asyncio.get_running_loop(), asyncio.Event()
            self._to_record, self._recording = [], None
        seen = self._written  # rows written from here on may be more urgent than the claimed
        claimed, settled = await asyncio.to_thread(self._claim)
        if claimed:
            await asyncio.gather(*(self._send_one(c, seen) for c in claimed))
        return len(claimed) + settled

    async def drain(self, timeout: float = 30.0) -> None:
        """Send until nothing is due (tests and the demo use this)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and await self.run_once():
            pass

    async def run_forever(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        await run_rounds(self.run_once, self.wake, stop, idle, log, "dispatch")
