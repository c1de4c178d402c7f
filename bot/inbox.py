"""The inbox: every message a provider hands us, stored before we answer the provider.

A webhook only verifies, stores a row here (keyed by the provider's id, so a redelivery is a
no-op) and acknowledges. The turn runs later, from the row, in the worker loop
(`channels/turns.py`): one conversation's messages strictly in arrival order, different
conversations in parallel. Each row ends `done` with an outcome saying what became of it:
answered, filed into a hand-off, deliberately silent, or held (the turn kept failing, so the
patient got a holding reply and staff a hand-off with the error id).

Privacy: what the patient wrote is kept sealed (encrypted with a key derived from SECRET_KEY)
until its turn has run, with card numbers already removed; the turn stores the message as the
engine always has (card numbers and dates of birth redacted) and the sealed copy is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import queue
import sqlite3
import threading
import time
import weakref
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, cast

from cryptography.fernet import Fernet
from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql import ClauseElement

from bot.understanding.redact import redact_card_numbers
from status import clinics
from status.db import Base, Database, Prepared, RawCursor, insert_ignore, utcnow

NOTIFY_CHANNEL = "patient_status_inbox"


class InboxState(StrEnum):
    PENDING = "pending"  # waiting for its turn (or for its next try)
    WORKING = "working"  # claimed by a worker under a lease
    DONE = "done"  # final: see the outcome


class Outcome(StrEnum):
    ANSWERED = "answered"  # the bot replied
    FILED = "filed"  # filed into a hand-off a person owns; the bot stays quiet
    SILENT = "silent"  # deliberately no reply (opted out, a keyword the carrier answers, ...)
    HELD = "held"  # the turn kept failing: holding reply to the patient, hand-off to staff


class Action(StrEnum):
    SMS = "sms"  # a text message from Twilio
    TELEGRAM = "telegram"  # a Telegram update, parsed by aiogram when its turn runs
    PAGE = "page"  # "message the clinic" on the status page, into the patient's conversation


class InboxMessage(Base):
    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    source: Mapped[str] = mapped_column(String(32))  # "twilio_sms", "telegram"
    provider_id: Mapped[str] = mapped_column(String(128))  # MessageSid, update_id
    action: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))  # the conversation: phone or chat id
    sealed: Mapped[str | None] = mapped_column(Text)  # the payload, encrypted; None once done
    received_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default=InboxState.PENDING)
    outcome: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]
    error_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(String(300))  # the exception type, never its data
    message_id: Mapped[int | None] = mapped_column(Integer)  # the stored inbound message
    handoff_id: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        # Telegram update ids count per bot: two clinics' bots may both send update 7
        UniqueConstraint("clinic_id", "source", "provider_id"),
        Index("ix_inbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_inbox_channel_address_id", "channel", "address", "id"),
    )


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"patient-status inbox\0" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secret_key: str, payload: dict[str, Any]) -> str:
    return _fernet(secret_key).encrypt(json.dumps(payload).encode()).decode("ascii")


def unseal(secret_key: str, sealed: str) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(_fernet(secret_key).decrypt(sealed.encode("ascii"))))


def store(
    session: Session,
    secret_key: str,
    *,
    clinic_id: int,
    source: str,
    provider_id: str,
    action: Action,
    channel: str,
    address: str,
    payload: dict[str, Any],
    now: datetime | None = None,
) -> bool:
    """Store one delivery; False when the provider already gave us this one (a redelivery).

    Card numbers in `payload["text"]` are removed before anything is written (the engine still
    answers with its warning: the redaction marker tells it one was there).
    """
    values = _row(
        secret_key, clinic_id, source, provider_id, action, channel, address, payload, now
    )
    stored = insert_ignore(session, InboxMessage.__table__, values)
    if stored and session.get_bind().dialect.name == "postgresql":
        # Workers in other processes LISTEN; delivered when this transaction commits.
        session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
    return stored


def store_now(
    db: Database,
    secret_key: str,
    *,
    clinic: int | clinics.SmsRecipient,
    source: str,
    provider_id: str,
    action: Action,
    channel: str,
    address: str,
    payload: dict[str, Any],
) -> bool:
    """`store` as one statement in a transaction of its own (the webhooks' path): the insert,
    and on PostgreSQL the NOTIFY in the same statement, on a pooled autocommit connection
    (`Database.raw_autocommit`), so a webhook costs one round trip and no ORM session. Safe to run
    again after a dropped connection: a second insert of the same id does nothing.

    `clinic`: its id, or where an SMS was sent, routed to its clinic in the same statement
    (`clinics.sms_clinic_id`)."""
    values = stored_values(
        secret_key, clinic=clinic, source=source, provider_id=provider_id, action=action,
        channel=channel, address=address, payload=payload,
    )  # fmt: skip
    return bool(db.raw_autocommit(lambda reader: reader.rows(_STORE, **values)))


def stored_values(
    secret_key: str,
    *,
    clinic: int | clinics.SmsRecipient,
    source: str,
    provider_id: str,
    action: Action,
    channel: str,
    address: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """The parameters of `_STORE` for one delivery: redacted and sealed, the clinic given or
    where the SMS was sent."""
    sms = clinic if isinstance(clinic, clinics.SmsRecipient) else clinics.SmsRecipient()
    clinic_id = None if isinstance(clinic, clinics.SmsRecipient) else clinic
    values = _row(
        secret_key, clinic_id, source, provider_id, action, channel, address, payload, None
    )
    values.update(to=sms.to, messaging_service_sid=sms.messaging_service_sid)
    return values


async def store_soon(db: Database, secret_key: str, **delivery: Any) -> bool:
    """`store_now` from the event loop, group-committed with the other webhooks' rows
    (`GroupWriter`): answered once the row is durably stored."""
    return await GroupWriter.of(db).store(stored_values(secret_key, **delivery))


class GroupWriter:
    """Stores the webhooks' inbox rows in groups: one thread per database takes every row that
    arrived while the previous group was being written and writes them all in one transaction
    (one commit, one fsync, one NOTIFY), then answers each webhook. A webhook is answered only
    once its row is committed; a group that fails is written again row by row, so one bad row
    fails only its own webhook.

    On SQLite the transaction takes the write lock without SQLite's busy handler (which sleeps
    1, 2, 5, 10... ms between tries and so misses the short gaps between another writer's
    transactions, e.g. the in-process turns'): it tries every `SQLITE_LOCK_POLL` seconds, so a
    burst of webhooks waits for the current turn's transaction at most, then all of them are
    stored together before the next turn takes the lock.
    """

    MAX_GROUP = 256
    IDLE_SECONDS = 2.0  # the thread ends after this long without work (tests make many dbs)
    SQLITE_LOCK_POLL = 0.0005
    SQLITE_LOCK_TIMEOUT = 10.0  # as the engine's busy_timeout

    _writers: weakref.WeakKeyDictionary[Database, GroupWriter] = weakref.WeakKeyDictionary()
    _writers_lock = threading.Lock()

    @classmethod
    def of(cls, db: Database) -> GroupWriter:
        writer = cls._writers.get(db)
        if writer is None:
            with cls._writers_lock:
                writer = cls._writers.setdefault(db, cls(db))
        return writer

    def __init__(self, db: Database) -> None:
        self._db = weakref.ref(db)  # the registry's key: a strong one would keep it forever
        self.is_sqlite = db.is_sqlite
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False

    async def store(self, values: dict[str, Any]) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            self._queue.put((values, loop, future))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="inbox-writer", daemon=True).start()
        return await future

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._running = False
                        return
                continue
            group = [first]
            while len(group) < self.MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._answer(group, self._write(group))

    def _write(self, group: list[_Pending]) -> list[bool | BaseException]:
        db = self._db()
        if db is None:
            return [RuntimeError("the database was closed")] * len(group)
        try:
            return list(db.raw_autocommit(lambda cursor: self._transaction(cursor, group)))
        except Exception as exc:
            if len(group) == 1:
                return [exc]
        results: list[bool | BaseException] = []
        for one in group:  # the group failed: each row alone, so only a bad one fails
            try:
                results += db.raw_autocommit(lambda cursor: self._transaction(cursor, [one]))  # noqa: B023
            except Exception as exc:
                results.append(exc)
        return results

    def _transaction(self, cursor: RawCursor, group: list[_Pending]) -> list[bool]:
        raw = cursor.cursor
        if self.is_sqlite:
            self._sqlite_begin(raw)
        else:
            raw.execute("BEGIN")
        try:
            stored = [bool(cursor.rows(_STORE, **values)) for values, _, _ in group]
            raw.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                raw.execute("ROLLBACK")
            raise
        return stored

    def _sqlite_begin(self, raw: Any) -> None:
        deadline = time.monotonic() + self.SQLITE_LOCK_TIMEOUT
        raw.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    raw.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    busy = getattr(exc, "sqlite_errorcode", None) in _SQLITE_BUSY
                    if not busy or time.monotonic() > deadline:
                        raise
                time.sleep(self.SQLITE_LOCK_POLL)
        finally:
            raw.execute(f"PRAGMA busy_timeout={round(self.SQLITE_LOCK_TIMEOUT * 1000)}")

    @staticmethod
    def _answer(group: list[_Pending], results: list[bool | BaseException]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], Any]]] = {}
        for (_, loop, future), result in zip(group, results, strict=True):
            by_loop.setdefault(loop, []).append((future, result))
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, answers)


_Pending = tuple[dict[str, Any], asyncio.AbstractEventLoop, "asyncio.Future[bool]"]
_SQLITE_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def _resolve(answers: list[tuple[asyncio.Future[bool], Any]]) -> None:
    for future, result in answers:
        if future.done():  # the webhook went away (cancelled); its row is stored anyway
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _row(
    secret_key: str,
    clinic_id: int | None,
    source: str,
    provider_id: str,
    action: Action,
    channel: str,
    address: str,
    payload: dict[str, Any],
    now: datetime | None,
) -> dict[str, Any]:
    if payload.get("text"):
        payload = {**payload, "text": redact_card_numbers(payload["text"])[0]}
    return {
        "clinic_id": clinic_id,
        "source": source,
        "provider_id": provider_id,
        "action": str(action),
        "channel": channel,
        "address": address,
        "sealed": seal(secret_key, payload),
        "received_at": now or utcnow(),
        "state": str(InboxState.PENDING),
        "attempts": 0,
        "next_attempt_at": None,  # due at once, whatever a worker's clock says
    }


def _store_statements() -> dict[str, ClauseElement]:
    table = InboxMessage.__table__
    assert isinstance(table, Table)  # as `insert_ignore` says: a model's table
    columns = ("clinic_id", "source", "provider_id", "action", "channel", "address", "sealed",
               "received_at", "state", "attempts", "next_attempt_at")  # fmt: skip

    def values(dialect: str) -> dict[str, ColumnElement[Any]]:
        found: dict[str, ColumnElement[Any]] = {
            name: bindparam(name, type_=table.c[name].type) for name in columns
        }
        # the clinic given, else the one the SMS was sent to
        found["clinic_id"] = func.coalesce(found["clinic_id"], clinics.sms_clinic_id(dialect))
        return found

    on_postgres = (
        postgresql.insert(table)
        .values(values("postgresql"))
        .on_conflict_do_nothing()
        .returning(table.c.id)
    ).cte("stored")
    return {
        # pg_notify in the statement that stores: delivered when it commits, only if it stored
        "postgresql": select(on_postgres.c.id, func.pg_notify(NOTIFY_CHANNEL, "")),
        "sqlite": sqlite.insert(table)
        .values(values("sqlite"))
        .on_conflict_do_nothing()
        .returning(table.c.id),
    }


_STORE = Prepared(_store_statements())
