"""Hand-offs: a person at the clinic takes over the conversation, with its whole context."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base, utcnow


class HandoffStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"


PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2}


class Queue(StrEnum):
    CLINICAL = "clinical"
    BILLING = "billing"
    FULFILMENT = "fulfilment"
    SCHEDULING = "scheduling"
    GENERAL = "general"


class Reason(StrEnum):
    HUMAN = "human"
    CLINICAL_QUESTION = "clinical_question"
    EMERGENCY = "emergency"
    RESCHEDULE = "reschedule"
    CANCEL_SUBSCRIPTION = "cancel_subscription"
    VERIFICATION_LOCKED = "verification_locked"
    NOT_UNDERSTOOD = "not_understood"
    BLOCKED = "blocked"
    STUCK = "stuck"
    DELIVERY_FAILED = "delivery_failed"
    PRESCRIPTION_DENIED = "prescription_denied"
    MEDIA_RECEIVED = "media_received"


# reason -> (priority, queue)
ROUTING: dict[Reason, tuple[Priority, Queue]] = {
    Reason.EMERGENCY: (Priority.URGENT, Queue.CLINICAL),
    Reason.CLINICAL_QUESTION: (Priority.HIGH, Queue.CLINICAL),
    Reason.BLOCKED: (Priority.HIGH, Queue.FULFILMENT),
    Reason.PRESCRIPTION_DENIED: (Priority.HIGH, Queue.CLINICAL),
    Reason.HUMAN: (Priority.NORMAL, Queue.GENERAL),
    Reason.RESCHEDULE: (Priority.NORMAL, Queue.SCHEDULING),
    Reason.CANCEL_SUBSCRIPTION: (Priority.NORMAL, Queue.BILLING),
    Reason.VERIFICATION_LOCKED: (Priority.NORMAL, Queue.GENERAL),
    Reason.NOT_UNDERSTOOD: (Priority.NORMAL, Queue.GENERAL),
    Reason.STUCK: (Priority.NORMAL, Queue.FULFILMENT),
    Reason.DELIVERY_FAILED: (Priority.NORMAL, Queue.GENERAL),
    Reason.MEDIA_RECEIVED: (Priority.NORMAL, Queue.GENERAL),
}


class Handoff(Base):
    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default=HandoffStatus.OPEN)
    reason: Mapped[str] = mapped_column(String(32))  # the first trigger
    reasons: Mapped[list] = mapped_column(default=list)  # every trigger, in order
    priority: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text, default="")  # what the patient asked, no PHI
    context: Mapped[dict] = mapped_column(default=dict)  # frozen at hand-off time
    assignee_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_response_due: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    last_patient_message_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[int | None] = mapped_column(Integer)
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # Only one open hand-off per patient (or per unknown conversation) at a time.
    open_key: Mapped[str | None] = mapped_column(String(64), unique=True)

    __table_args__ = (
        Index("ix_handoffs_status_priority_created_at", "status", "priority", "created_at"),
    )


class HandoffEntry(Base):
    """What happened in a hand-off: triggers, notes, assignments, replies, resolution."""

    __tablename__ = "handoff_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    handoff_id: Mapped[int] = mapped_column(
        ForeignKey("handoffs.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(24))  # trigger, note, assign, reply, resolve, message
    staff_id: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def open_for_patient(session: Session, patient_id: int) -> Handoff | None:
    query = select(Handoff).where(
        Handoff.patient_id == patient_id, Handoff.status == HandoffStatus.OPEN
    )
    return session.scalars(query).first()


def open_for_conversation(session: Session, conversation_id: int) -> Handoff | None:
    query = select(Handoff).where(
        Handoff.conversation_id == conversation_id, Handoff.status == HandoffStatus.OPEN
    )
    return session.scalars(query).first()
