"""The outbox dispatcher: sends what the engine and the rules wrote, exactly once.

Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL (and SQLite's single writer), so several
dispatcher processes can share one outbox. A claim is a lease: a dispatcher that dies mid-send
leaves rows that another picks up when the lease runs out. Every message ends in a recorded
final state: sent/delivered, logged (log mode), failed (with the provider's code) or cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from bot import conversations
from bot.delivery import delivery_failed
from bot.messages import Direction, Kind, Message, OutStatus
from channels.senders.base import SendResult
from status import metrics
from status.db import Database, utcnow
from status.settings import Settings

log = logging.getLogger("patient_status.dispatch")

LEASE = timedelta(seconds=60)
RECORD_PATIENCE = 45.0  # seconds to keep trying to record a send: well inside the lease
MAX_ATTEMPTS = 6
BACKOFF_BASE = 2.0  # seconds: 2, 4, 8, 16, 32 ...
BACKOFF_CAP = 600.0
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


class Pacer:
    """Minimum spacing between sends per key (a Telegram chat, all of Telegram, an SMS number)."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def wait(self, keys: list[tuple[str, float]]) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max([now, *(self._next.get(key, now) for key, _ in keys)])
            for key, interval in keys:
                if interval > 0:
                    self._next[key] = start + interval
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def _outcome(result: SendResult) -> str:
    if result.ok:
        return "logged" if result.status == "logged" else "sent"
    return "retry" if result.retryable else "failed"


FailureHook = Callable[[Session, Message, SendResult], None]


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
    ) -> None:
        self.settings = settings
        self.db = db
        self.senders = senders
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.clock = clock
        self.batch_size = batch_size
        self.semaphore = asyncio.Semaphore(concurrency)
        self.pacer = Pacer()
        self.failure_hooks: list[FailureHook] = []  # permanent failures (fallback, staff alerts)
        self.sent_hooks: list[Callable[[Session, Message], None]] = []
        self.wake = asyncio.Event()

    # --- database side (sync, run in a thread) -------------------------------------------------
    def claim(self, now: datetime | None = None) -> list[Claimed]:
        now = now or self.clock()
        with self.db.session() as session:
            query = (
                select(Message)
                .where(
                    Message.direction == Direction.OUT,
                    or_(
                        and_(
                            Message.status == OutStatus.PENDING,
                            or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
                        ),
                        and_(Message.status == OutStatus.SENDING, Message.claimed_until < now),
                    ),
                )
                .order_by(Message.urgent.desc(), Message.id)
                .limit(self.batch_size)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            claimed = []
            for message in session.scalars(query):
                if self._cancel_if_not_allowed(session, message, now):
                    continue
                if message.channel in LOCAL_CHANNELS:
                    message.status = OutStatus.DELIVERED
                    message.sent_at = message.delivered_at = message.status_updated_at = now
                    continue
                message.status = OutStatus.SENDING
                message.claimed_by = self.worker_id
                message.claimed_until = now + LEASE
                claimed.append(
                    Claimed(
                        message.id,
                        message.channel,
                        message.address,
                        message.body,
                        message.buttons or [],
                        message.kind,
                        message.attempts,
                        message.patient_id,
                        message.conversation_id,
                    )  # fmt: skip
                )
            return claimed

    def _cancel_if_not_allowed(self, session: Session, message: Message, now: datetime) -> bool:
        """Send-time checks: consent may have changed since the message was written."""
        reason = None
        if message.channel not in self.senders and message.channel not in LOCAL_CHANNELS:
            reason = "channel_not_configured"
        elif message.kind not in (Kind.SYSTEM, Kind.STAFF_ALERT):
            conv = conversations.find(session, message.channel, message.address)
            if conv is not None and conv.opted_out:
                reason = "opted_out"
            elif conv is not None and conv.bad_address:
                reason = "bad_address"
        if reason is None:
            return False
        message.status = OutStatus.CANCELLED if reason == "opted_out" else OutStatus.FAILED
        message.error_code = reason
        message.status_updated_at = now
        return True

    def record(self, claimed: Claimed, result: SendResult, now: datetime | None = None) -> str:
        now = now or self.clock()
        with self.db.session() as session:
            message = session.get(Message, claimed.id, with_for_update=not self.db.is_sqlite)
            if message is None or message.claimed_by != self.worker_id:
                return "lost"  # our lease ran out and another dispatcher took it over
            message.attempts += 1
            message.claimed_by = None
            message.claimed_until = None
            message.status_updated_at = now
            message.error_code = result.error_code
            message.error_message = result.error_message
            metrics.SENDS.labels(claimed.channel, _outcome(result)).inc()
            if not result.ok:
                metrics.SEND_FAILURES.labels(claimed.channel, result.error_code or "unknown").inc()
            if result.ok:
                message.status = OutStatus.LOGGED if result.status == "logged" else OutStatus.SENT
                message.provider_id = result.provider_message_id
                message.sent_at = now
                for hook in self.sent_hooks:
                    hook(session, message)
            elif result.retryable and message.attempts < MAX_ATTEMPTS:
                backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (message.attempts - 1))
                delay = max(backoff, result.retry_after or 0)
                message.status = OutStatus.PENDING
                message.next_attempt_at = now + timedelta(seconds=delay)
            else:
                message.status = OutStatus.FAILED
                self._permanent(session, message, result, now)
            return message.status

    def _permanent(self, session: Session, message: Message, result: SendResult, now) -> None:  # noqa: ANN001
        delivery_failed(
            session, message, result.permanent_reason, result.error_code, now, self.settings
        )
        for hook in self.failure_hooks:
            hook(session, message, result)

    # --- sending (async) -----------------------------------------------------------------------
    def _pace_keys(self, claimed: Claimed) -> list[tuple[str, float]]:
        if claimed.channel == "telegram":
            return [(f"tg:{claimed.address}", 1.0), ("tg:*", 1 / 30)]
        rate = self.settings.twilio_messages_per_second
        return [("sms:*", 1 / rate if rate > 0 else 0.0)]

    async def _send_one(self, claimed: Claimed) -> str:
        sender = self.senders[claimed.channel]
        async with self.semaphore:
            await self.pacer.wait(self._pace_keys(claimed))
            started = time.perf_counter()
            try:
                result = await sender.send(
                    claimed.address,
                    claimed.body,
                    buttons=claimed.buttons or None,
                    status_callback=self._status_callback(claimed),
                )
            except Exception as exc:  # noqa: BLE001 - a sender bug must not lose the message
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

    async def _record_patiently(self, claimed: Claimed, result: SendResult) -> str:
        """Record what the provider said, retrying while our lease holds: a send the provider
        accepted but we failed to record would be sent again once the lease ran out."""
        deadline = time.monotonic() + RECORD_PATIENCE
        delay = 0.2
        while True:
            try:
                return await asyncio.to_thread(self.record, claimed, result)
            except Exception:  # noqa: BLE001 - a busy or briefly unreachable database
                if time.monotonic() + delay > deadline:
                    log.exception("could not record a send", extra={"message_id": claimed.id})
                    return "unrecorded"
                log.warning("recording a send failed; retrying", extra={"message_id": claimed.id})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _status_callback(self, claimed: Claimed) -> str | None:
        if claimed.channel != "sms" or not self.settings.public_base_url:
            return None
        return self.settings.public_base_url.rstrip("/") + "/webhooks/twilio/status"

    async def run_once(self) -> int:
        """Claim one batch and send it; the number of messages handled."""
        claimed = await asyncio.to_thread(self.claim)
        if claimed:
            await asyncio.gather(*(self._send_one(c) for c in claimed))
        return len(claimed)

    async def drain(self, timeout: float = 30.0) -> None:
        """Send until nothing is due (tests and the demo use this)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and await self.run_once():
            pass

    async def run_forever(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except Exception:  # noqa: BLE001 - keep dispatching; the next round retries
                log.exception("dispatch round failed")
                handled = 0
            if handled:
                continue
            self.wake.clear()
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self.wake.wait())]
            await asyncio.wait(waits, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
