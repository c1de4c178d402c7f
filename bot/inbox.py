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
import sqlite3
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
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql import ClauseElement

from bot.understanding.redact import redact_card_numbers
from status import clinics
from status.db import (
    AsyncRawCursor,
    AsyncReads,
    Base,
    Database,
    Prepared,
    insert_ignore,
    utcnow,
)

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


# The rows a turn is still to come for: the claim's two partial indexes hold only these, so
# their size is the backlog, not the history. Written with its states as constants (not bound
# parameters), in the index and in the queries: a planner proves that a query may use a partial
# index only from constants.
UNFINISHED_STATES = (InboxState.PENDING, InboxState.WORKING)
UNFINISHED = text("state IN (" + ", ".join(f"'{s}'" for s in UNFINISHED_STATES) + ")")


def unfinished(state: ColumnElement[str]) -> ColumnElement[bool]:
    """`UNFINISHED` for a state column of a given (aliased) inbox table."""
    return state.in_([literal_column(f"'{s}'") for s in UNFINISHED_STATES])


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
        # the turn runner's claim (`TurnRunner.claim`): the unfinished rows in arrival order,
        # and a conversation's unfinished rows
        Index("ix_inbox_unfinished_id", "id", postgresql_where=UNFINISHED, sqlite_where=UNFINISHED),
        Index(
            "ix_inbox_unfinished_address",
            "address",
            "channel",
            "clinic_id",
            "id",
            postgresql_where=UNFINISHED,
            sqlite_where=UNFINISHED,
        ),
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


def store_now(db: Database, secret_key: str, **delivery: Any) -> bool:
    """`store` as one statement in a transaction of its own (the webhooks' path): the insert,
    and on PostgreSQL the NOTIFY in the same statement, on a pooled autocommit connection
    (`Database.raw_autocommit`), so a webhook costs one round trip and no ORM session. Safe to run
    again after a dropped connection: a second insert of the same id does nothing.

    `clinic`: its id, or where an SMS was sent, routed to its clinic in the same statement
    (`clinics.sms_clinic_id`). `delivery`: the keywords of `stored_values`."""
    values = stored_values(secret_key, **delivery)
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
    """Stores the webhooks' inbox rows in groups, on the event loop: every row that arrived
    while the previous group was being written is written in one transaction (one commit, one
    NOTIFY), then each webhook is answered. A webhook is answered only once its row is
    committed; a group that fails is written again row by row, so one bad row fails only its
    own webhook.

    No thread: a thread's hand-offs cost more than the statements (each one a wait for the GIL
    the other side holds). On PostgreSQL the group goes in one pipeline on an async connection
    (`AsyncReads`); on SQLite, whose statements take microseconds, it runs on the loop, and the
    write lock is taken without SQLite's busy handler (which would block the loop, and sleeps
    1, 2, 5, 10... ms between tries, missing the short gaps between another writer's
    transactions, e.g. the in-process turns'): `BEGIN IMMEDIATE` is tried every
    `SQLITE_LOCK_POLL` seconds, the loop serving requests meanwhile, so a burst waits for the
    current turn's transaction at most and is then stored together before the next turn.
    """

    MAX_GROUP = 256
    SQLITE_LOCK_POLL = 0.0005
    SQLITE_LOCK_TIMEOUT = 10.0  # as the engine's busy_timeout

    _writers: weakref.WeakKeyDictionary[Database, GroupWriter] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, db: Database) -> GroupWriter:
        writer = cls._writers.get(db)
        if writer is None:
            writer = cls._writers.setdefault(db, cls(db))
        return writer

    def __init__(self, db: Database) -> None:
        self._db = weakref.ref(db)  # the registry's key: a strong one would keep it forever
        self.is_sqlite = db.is_sqlite
        self._reads = None if db.is_sqlite else AsyncReads(db.url, db.engine.dialect, size=1)
        self._dialect = db.engine.dialect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None

    async def store(self, values: dict[str, Any]) -> bool:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new app's loop (tests): the old one's work went with it
            self._loop, self._pending, self._task = loop, [], None
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((values, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    async def close(self) -> None:
        """Close the PostgreSQL connection (an app's lifespan ends)."""
        if self._reads is not None:
            await self._reads.close()

    async def _drain(self) -> None:
        while self._pending:
            group = self._pending[: self.MAX_GROUP]
            del self._pending[: self.MAX_GROUP]
            results = await self._write([values for values, _ in group])
            for (_, future), result in zip(group, results, strict=True):
                if future.done():  # the webhook went away (cancelled); its row is stored anyway
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _write(self, group: list[dict[str, Any]]) -> list[bool | BaseException]:
        try:
            return list[bool | BaseException](await self._transaction(group))
        except Exception as exc:
            if len(group) == 1:
                return [exc]
        results: list[bool | BaseException] = []
        for values in group:  # the group failed: each row alone, so only a bad one fails
            try:
                results += await self._transaction([values])
            except Exception as exc:
                results.append(exc)
        return results

    async def _transaction(self, group: list[dict[str, Any]]) -> list[bool]:
        if self._reads is None:
            return await self._sqlite_transaction(group)

        async def write(cursor: AsyncRawCursor) -> list[bool]:
            await cursor.cursor.execute("BEGIN")
            stored = await cursor.many(_STORE, group)
            await cursor.cursor.execute("COMMIT")
            return [bool(rows) for rows in stored]

        # a dropped connection fails the transaction (nothing stored) and `run` tries once more
        return await self._reads.run(write)

    async def _sqlite_transaction(self, group: list[dict[str, Any]]) -> list[bool]:
        db = self._db()
        if db is None:
            raise RuntimeError("the database was closed")
        raw = db.autocommit_engine.raw_connection()
        try:
            cursor = raw.cursor()
            await self._sqlite_begin(cursor)
            try:
                stored = [bool(_STORE.rows(cursor, self._dialect, values)) for values in group]
                cursor.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    cursor.execute("ROLLBACK")
                raise
            return stored
        finally:
            raw.close()

    async def _sqlite_begin(self, cursor: Any) -> None:
        deadline = time.monotonic() + self.SQLITE_LOCK_TIMEOUT
        cursor.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    busy = getattr(exc, "sqlite_errorcode", None) in _SQLITE_BUSY
                    if not busy or time.monotonic() > deadline:
                        raise
                await asyncio.sleep(self.SQLITE_LOCK_POLL)
        finally:
            cursor.execute(f"PRAGMA busy_timeout={round(self.SQLITE_LOCK_TIMEOUT * 1000)}")


_SQLITE_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


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
