"""Every message in and out. Outbound rows are the outbox: written in the transaction that
caused them, sent later by the dispatcher, and always ending in a recorded final state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base, utcnow


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


FINAL = {
    OutStatus.DELIVERED,
    OutStatus.LOGGED,
    OutStatus.FAILED,
    OutStatus.UNDELIVERED,
    OutStatus.CANCELLED,
}


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
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
    intents: Mapped[list] = mapped_column(default=list)
    confidence: Mapped[float | None] = mapped_column(Float)
    media: Mapped[list] = mapped_column(default=list)
    buttons: Mapped[list] = mapped_column(default=list)
    # Proactive messages: what they are about, so they can be coalesced, digested or re-sent
    # on another channel ({"key", "template", "entity", "source_id", "items"}).
    data: Mapped[dict] = mapped_column(default=dict)
    provider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    staff_id: Mapped[int | None] = mapped_column(Integer)
    handoff_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # outbound delivery
    status: Mapped[str | None] = mapped_column(String(16))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
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
    )


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
