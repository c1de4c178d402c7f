"""Every message in and out. Outbound rows are the outbox: written in the transaction that
caused them, sent later by the dispatcher, and always ending in a recorded final state."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    Select,
    SmallInteger,
    String,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base, utcnow

# Telegram button rows: `{"text", "data"}`, `{"text", "url"}` or `{"text", "request_contact"}`
Buttons = list[list[dict[str, Any]]]


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class Kind(StrEnum):
    REPLY = "reply"  # the bot answering the patient
    PROACTIVE = "proactive"  # the bot telling the patient of a change or reminder
    STAFF = "staff"  # a person at the clinic writing to the patient
    SYSTEM = "system"  # compliance confirmations (STOP/START/HELP)
    STAFF_ALERT = "staff_alert"  # to the staff chat, not to a patient


class OutStatus(StrEnum):
    PENDING = "pending"  # waiting for the dispatcher (or its not_before)
    SENDING = "sending"  # claimed by a dispatcher
    SENT = "sent"  # accepted by the provider
    DELIVERED = "delivered"  # the provider says it reached the handset
    LOGGED = "logged"  # log mode: recorded and printed, not sent
    FAILED = "failed"  # final: permanent error or retries exhausted
    UNDELIVERED = "undelivered"  # final: the carrier could not deliver
    CANCELLED = "cancelled"  # final: made obsolete, or the address opted out before sending


class Lane(IntEnum):
    """The order the outbox sends in (lowest first); pacing per number and chat still holds."""

    EMERGENCY = 0  # emergency instructions (and the other urgent answers to a patient)
    REPLY = 1  # a reply to a patient who just wrote
    STAFF = 2  # a person at the clinic writing to the patient, staff alerts
    UPDATE = 3  # proactive: a change in the patient's care
    DIGEST = 4  # digests and reminders


DIGESTS = ("notify_digest", "notify_caregiver_digest")


def lane_of(kind: str, urgent: bool, template: str | None) -> Lane:
    if kind in (Kind.REPLY, Kind.SYSTEM):
        return Lane.EMERGENCY if urgent else Lane.REPLY
    if kind in (Kind.STAFF, Kind.STAFF_ALERT):
        return Lane.STAFF
    if not urgent and template and (template in DIGESTS or template.startswith("remind_")):
        return Lane.DIGEST
    return Lane.UPDATE


FINAL = {
    OutStatus.DELIVERED,
    OutStatus.LOGGED,
    OutStatus.FAILED,
    OutStatus.UNDELIVERED,
    OutStatus.CANCELLED,
}

# Outbound rows not yet handed to the provider (the partial index of the per-address order).
UNSENT = text("status IN ('pending', 'sending')")


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="SET NULL"))
    direction: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # card numbers are redacted before this is written
    template: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(5))
    intent: Mapped[str | None] = mapped_column(String(32))
    intents: Mapped[list[str]] = mapped_column(JSON, default=list)
    confidence: Mapped[float | None] = mapped_column(Float)
    media: Mapped[list[str]] = mapped_column(JSON, default=list)
    buttons: Mapped[Buttons] = mapped_column(JSON, default=list)
    # Proactive messages: what they are about, so they can be coalesced, digested or re-sent
    # on another channel ({"key", "template", "entity", "source_id", "items"}).
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    staff_id: Mapped[int | None] = mapped_column(Integer)
    handoff_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # outbound delivery
    status: Mapped[str | None] = mapped_column(String(16))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(SmallInteger, default=Lane.UPDATE)  # a Lane
    expires_at: Mapped[datetime | None]  # not sent by then: cancelled, not sent late
    coalesce_key: Mapped[str | None] = mapped_column(String(200))
    not_before: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    status_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (
        Index("ix_messages_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        Index("ix_messages_patient_id_created_at", "patient_id", "created_at"),
        Index("ix_messages_coalesce_key_status", "coalesce_key", "status"),
        Index("ix_messages_status_priority_id", "status", "priority", "id"),
        # the dispatcher's per-address order (`Dispatcher._unsent_of`): only unsent rows
        Index(
            "ix_messages_unsent_address",
            "address",
            "channel",
            "clinic_id",
            postgresql_where=UNSENT,
            sqlite_where=UNSENT,
        ),
    )


# The columns with defaults that only one direction sets, given by the other too: a flush
# groups rows into one INSERT only while they set the same columns, so a batch's inbound
# messages and replies (`TurnRunner.run_batch`) are written by one statement, not one each.
INBOUND_DEFAULTS: dict[str, Any] = {"intents": [], "media": []}
OUTBOUND_DEFAULTS: dict[str, Any] = {
    "buttons": [], "data": {}, "urgent": False, "priority": Lane.UPDATE, "attempts": 0,
}  # fmt: skip


def transcript(session: Session, conversation_id: int, limit: int = 100) -> list[Message]:
    """Oldest first, the last `limit` messages."""
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(list(session.scalars(query))))


def for_patient(session: Session, patient_id: int, limit: int = 100) -> list[Message]:
    query = (
        select(Message)
        .where(Message.patient_id == patient_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(list(session.scalars(query))))


def wrote_since(session: Session, conversation_id: int, since: datetime) -> bool:
    """Whether the bot or a person answered in this conversation after `since`."""
    query = select(Message.id).where(
        Message.conversation_id == conversation_id,
        Message.direction == Direction.OUT,
        Message.kind.in_([Kind.REPLY, Kind.STAFF]),
        Message.status != OutStatus.CANCELLED,
        Message.created_at > since,
    )
    return session.scalars(query.limit(1)).first() is not None


def by_provider_id(session: Session, provider_id: str) -> Message | None:
    query = select(Message).where(
        Message.provider_id == provider_id, Message.direction == Direction.OUT
    )
    return session.scalars(query).first()


# proactive messages that count against a patient's frequency caps
COUNTED = (OutStatus.PENDING, OutStatus.SENDING, OutStatus.SENT, OutStatus.DELIVERED,
           OutStatus.LOGGED)  # fmt: skip


def _counted_proactive(
    patient_id: int | None, conversation_id: int | None
) -> Select[datetime | None]:
    to = (
        Message.patient_id == patient_id
        if conversation_id is None
        else Message.conversation_id == conversation_id
    )
    return select(Message.not_before).where(
        to,
        Message.direction == Direction.OUT,
        Message.kind == Kind.PROACTIVE,
        Message.urgent.is_(False),
        Message.status.in_(COUNTED),
    )


def proactive_count_between(
    session: Session,
    patient_id: int | None,
    start: datetime,
    end: datetime,
    *,
    conversation_id: int | None = None,
) -> int:
    """Capped proactive messages to the patient due in [start, end); with `conversation_id`,
    those to that conversation instead (a caregiver's: their own cap, whoever the news is of)."""
    query = _counted_proactive(patient_id, conversation_id).where(
        Message.not_before >= start, Message.not_before < end
    )
    return session.scalar(select(func.count()).select_from(query.subquery())) or 0


def proactive_times_since(
    session: Session,
    patient_id: int | None,
    since: datetime,
    *,
    conversation_id: int | None = None,
) -> list[datetime]:
    """When the capped proactive messages to the patient (or to `conversation_id`) since
    `since` are due, in order."""
    query = _counted_proactive(patient_id, conversation_id).where(Message.not_before > since)
    return sorted(session.scalars(query))


def pending_with_key(session: Session, coalesce_key: str) -> list[Message]:
    """Unsent messages about one thing (a coalescing key names the patient), oldest first."""
    query = select(Message).where(
        Message.coalesce_key == coalesce_key, Message.status == OutStatus.PENDING
    )
    return list(session.scalars(query.order_by(Message.id)))
