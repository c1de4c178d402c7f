"""Hand-offs: a person at the clinic takes over the conversation, with its whole context."""

from __future__ import annotations

import html
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot import conversations, outbox
from bot.conversations import Conversation
from bot.messages import Kind, Message
from status import clinics, limits, metrics
from status.db import Base, utcnow
from status.patients import Patient
from status.settings import Settings


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
    POSSIBLE_RISK = "possible_risk"
    RESCHEDULE = "reschedule"
    CANCEL_SUBSCRIPTION = "cancel_subscription"
    VERIFICATION_LOCKED = "verification_locked"
    NOT_UNDERSTOOD = "not_understood"
    BLOCKED = "blocked"
    STUCK = "stuck"
    DELIVERY_FAILED = "delivery_failed"
    PRESCRIPTION_DENIED = "prescription_denied"
    MEDIA_RECEIVED = "media_received"
    DELIVERY_PROBLEM = "delivery_problem"
    CHANGE_REQUEST = "change_request"
    TURN_FAILED = "turn_failed"  # the bot could not answer a message; the patient was told
    PAGE_MESSAGE = "page_message"  # written with "message the clinic" on the status page


# What each reason means, in the words staff read: the console's queue, hand-off and operations
# pages and the staff chat's alerts all say it this way (a test holds it to the whole enum).
REASON_WORDS: dict[Reason, str] = {
    Reason.HUMAN: "asked for a person",
    Reason.CLINICAL_QUESTION: "clinical question",
    Reason.EMERGENCY: "emergency",
    Reason.POSSIBLE_RISK: "possible risk: check in",
    Reason.RESCHEDULE: "wants to move or cancel a visit",
    Reason.CANCEL_SUBSCRIPTION: "wants to cancel or pause the plan",
    Reason.VERIFICATION_LOCKED: "three wrong dates of birth",
    Reason.NOT_UNDERSTOOD: "the bot did not understand twice",
    Reason.BLOCKED: "asked about a blocked prescription",
    Reason.STUCK: "an order is stuck past its expected time",
    Reason.DELIVERY_FAILED: "our message did not reach the patient",
    Reason.PRESCRIPTION_DENIED: "prescription denied",
    Reason.MEDIA_RECEIVED: "sent a picture",
    Reason.DELIVERY_PROBLEM: "problem with a delivery",
    Reason.CHANGE_REQUEST: "asked to change the pharmacy or order",
    Reason.TURN_FAILED: "the bot could not answer; the patient was told we will follow up",
    Reason.PAGE_MESSAGE: "wrote to the clinic on the status page",
}


def reason_words(reason: str) -> str:
    """A stored reason code in plain words (a code this version does not know: as written)."""
    try:
        return REASON_WORDS[Reason(reason)]
    except ValueError:
        return reason.replace("_", " ")


# Back-office work items: staff must act, but the patient did not ask for a person, so the bot
# keeps answering them until a conversational trigger joins the same hand-off.
WORK_ITEMS = {Reason.STUCK, Reason.DELIVERY_FAILED, Reason.PRESCRIPTION_DENIED}

# reason -> (priority, queue)
ROUTING: dict[Reason, tuple[Priority, Queue]] = {
    Reason.EMERGENCY: (Priority.URGENT, Queue.CLINICAL),
    Reason.POSSIBLE_RISK: (Priority.URGENT, Queue.CLINICAL),
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
    Reason.DELIVERY_PROBLEM: (Priority.NORMAL, Queue.FULFILMENT),
    Reason.CHANGE_REQUEST: (Priority.NORMAL, Queue.FULFILMENT),
    Reason.TURN_FAILED: (Priority.HIGH, Queue.GENERAL),
    Reason.PAGE_MESSAGE: (Priority.NORMAL, Queue.GENERAL),
}


class Handoff(Base):
    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default=HandoffStatus.OPEN)
    reason: Mapped[str] = mapped_column(String(32))  # the first trigger
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)  # every trigger, in order
    priority: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text, default="")  # what the patient asked, no PHI
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # frozen at hand-off time
    assignee_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_response_due: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    last_patient_message_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[int | None] = mapped_column(Integer)
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # False for a work item (stuck, delivery failed): the bot still answers the patient.
    owns_conversation: Mapped[bool] = mapped_column(default=True)
    # Only one open hand-off per patient (or per unknown conversation) at a time.
    open_key: Mapped[str | None] = mapped_column(String(64), unique=True)

    __table_args__ = (
        Index("ix_handoffs_status_priority_created_at", "status", "priority", "created_at"),
        # the clinic's hand-offs in a status, the resolved newest first (`recently_resolved`)
        Index(
            "ix_handoffs_clinic_id_status_resolved_at", "clinic_id", "status", "resolved_at", "id"
        ),
        # the clinic's hand-offs by age (`list_handoffs`, the ops page's counts)
        Index("ix_handoffs_clinic_id_created_at", "clinic_id", "created_at"),
        Index("ix_handoffs_patient_id", "patient_id"),  # a patient's hand-offs (staff pages)
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


def by_id(session: Session, clinic_ids: Collection[int], handoff_id: int) -> Handoff | None:
    """The hand-off with this id if it belongs to one of these clinics (a key's, a staff
    member's); None for another clinic's and for an id no row can have (INTEGER is 32-bit)."""
    if not 0 < handoff_id <= limits.MAX_INT32:
        return None
    handoff = session.get(Handoff, handoff_id)
    return handoff if handoff is not None and handoff.clinic_id in clinic_ids else None


def get(session: Session, clinic_ids: Collection[int], handoff_id: int) -> Handoff:
    """`by_id`, or HandoffNotFound: another clinic's hand-off is not found, never forbidden."""
    handoff = by_id(session, clinic_ids, handoff_id)
    if handoff is None:
        raise HandoffNotFound(handoff_id)
    return handoff


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


# --- operations -------------------------------------------------------------------------------


def open_key(patient_id: int | None, conversation_id: int | None) -> str:
    """The key of the one open hand-off a patient (or a conversation without one) may have."""
    return f"patient:{patient_id}" if patient_id else f"conversation:{conversation_id}"


def find_open(
    session: Session, patient_id: int | None, conversation_id: int | None
) -> Handoff | None:
    key = open_key(patient_id, conversation_id)
    return session.scalars(select(Handoff).where(Handoff.open_key == key)).one_or_none()


def open_or_add(
    session: Session,
    *,
    clinic_id: int,
    reason: Reason,
    now: datetime,
    patient_id: int | None,
    conversation_id: int | None,
    summary: str = "",
    context: Callable[[], dict[str, Any]] | None = None,  # the packet, for a new hand-off only
    sla_minutes: dict[str, int] | None = None,
    settings: Settings | None = None,  # staff chat alerts when set
) -> tuple[Handoff, bool]:
    """The patient's open hand-off with this trigger added, or a new one. (handoff, created)."""

    existing = find_open(session, patient_id, conversation_id)
    priority, queue = ROUTING[reason]
    if sla_minutes is None and settings is not None:
        sla_minutes = getattr(settings, "sla_minutes", None)
    if existing is None:
        sla = (sla_minutes or DEFAULT_SLA_MINUTES)[priority]
        handoff = Handoff(
            clinic_id=clinic_id,
            patient_id=patient_id,
            conversation_id=conversation_id,
            status=HandoffStatus.OPEN,
            reason=reason,
            reasons=[reason.value],
            priority=priority,
            queue=queue,
            summary=summary,
            context=context() if context else {},
            owns_conversation=reason not in WORK_ITEMS,
            created_at=now,
            first_response_due=now + timedelta(minutes=sla),
            open_key=open_key(patient_id, conversation_id),
        )
        try:
            with session.begin_nested():
                session.add(handoff)
                session.flush()
        except IntegrityError:  # another process opened one a moment ago: add to it
            existing = find_open(session, patient_id, conversation_id)
        else:
            add_entry(
                session, handoff, "trigger", f"{reason.value}: {summary}".strip(": "), now=now
            )
            alert_staff(session, handoff, reason, settings, now)
            metrics.count_on_commit(
                session, metrics.HANDOFFS.labels(reason.value, clinics.slug_of(session, clinic_id))
            )
            return handoff, True
    assert existing is not None
    if reason not in WORK_ITEMS:
        existing.owns_conversation = True
    if reason.value not in existing.reasons:
        existing.reasons = [*existing.reasons, reason.value]
    if PRIORITY_RANK[priority] < PRIORITY_RANK[Priority(existing.priority)]:
        existing.priority = priority  # an emergency raises a normal hand-off to urgent
        alert_staff(session, existing, reason, settings, now)
        existing.queue = queue
        sla = (sla_minutes or DEFAULT_SLA_MINUTES)[priority]
        due = now + timedelta(minutes=sla)
        if existing.first_response_at is None and (
            existing.first_response_due is None or due < existing.first_response_due
        ):
            existing.first_response_due = due
    if summary and summary not in existing.summary:
        existing.summary = f"{existing.summary}\n{summary}".strip()
    add_entry(session, existing, "trigger", f"{reason.value}: {summary}".strip(": "), now=now)
    return existing, False


def alert_staff(
    session: Session, handoff: Handoff, reason: Reason, settings: Settings | None, now: datetime
) -> None:
    """Urgent and high hand-offs ping the staff Telegram chat: a reason and a link, no PHI."""

    chat = getattr(settings, "telegram_staff_chat_id", None) if settings else None
    if settings is None or not chat or handoff.priority not in (Priority.URGENT, Priority.HIGH):
        return
    base = (settings.public_base_url or "").rstrip("/")
    label = REASON_WORDS[reason]
    body = (
        f"{'🚨 URGENT' if handoff.priority == Priority.URGENT else 'High priority'} hand-off "
        f"#{handoff.id}: {label} ({handoff.queue} queue). Open: {base}/staff/handoffs/{handoff.id}"
    )
    outbox.enqueue(
        session, clinic_id=handoff.clinic_id, channel="telegram", address=str(chat), body=body,
        kind=Kind.STAFF_ALERT,
        handoff_id=handoff.id, urgent=True, now=now,
    )  # fmt: skip


def add_entry(
    session: Session,
    handoff: Handoff,
    kind: str,
    body: str = "",
    *,
    staff_id: int | None = None,
    message_id: int | None = None,
    now: datetime | None = None,
) -> HandoffEntry:
    entry = HandoffEntry(
        handoff_id=handoff.id,
        kind=kind,
        body=body,
        staff_id=staff_id,
        message_id=message_id,
        created_at=now or utcnow(),
    )
    session.add(entry)
    return entry


def resolve(
    session: Session, handoff: Handoff, *, staff_id: int | None, note: str | None, now: datetime
) -> None:
    handoff.status = HandoffStatus.RESOLVED
    handoff.resolved_at = now
    handoff.resolved_by = staff_id
    handoff.resolution_note = note
    handoff.open_key = None
    add_entry(session, handoff, "resolve", note or "", staff_id=staff_id, now=now)


def entries(session: Session, handoff_id: int) -> list[HandoffEntry]:
    query = select(HandoffEntry).where(HandoffEntry.handoff_id == handoff_id)
    return list(session.scalars(query.order_by(HandoffEntry.id)))


def list_handoffs(
    session: Session, clinic_ids: Collection[int], status: str | None = None, limit: int = 200
) -> list[Handoff]:
    """These clinics' hand-offs: open ones oldest first (the most overdue lead); resolved ones
    newest first."""
    query = select(Handoff).where(Handoff.clinic_id.in_(list(clinic_ids)))
    if status:
        query = query.where(Handoff.status == status)
    order = Handoff.created_at if status == HandoffStatus.OPEN else Handoff.created_at.desc()
    return list(session.scalars(query.order_by(order).limit(limit)))


DEFAULT_SLA_MINUTES = {Priority.URGENT: 5, Priority.HIGH: 30, Priority.NORMAL: 240}


# --- staff actions ----------------------------------------------------------------------------


def conversation_of(session: Session, handoff: Handoff) -> Conversation | None:
    """Where a staff reply goes: the conversation that raised the hand-off, else the patient's
    preferred channel (Telegram when linked and preferred, otherwise SMS to their phone)."""

    if handoff.conversation_id is not None:
        conv = session.get(Conversation, handoff.conversation_id)
        if conv is not None and conv.channel in ("sms", "telegram", "simulator", "terminal"):
            return conv
    patient = session.get(Patient, handoff.patient_id) if handoff.patient_id else None
    if patient is None:
        return None
    clinic_id = handoff.clinic_id
    if patient.preferred_channel == "telegram" and patient.telegram_chat_id:
        return conversations.get_or_create(session, clinic_id, "telegram", patient.telegram_chat_id)
    return conversations.get_or_create(session, clinic_id, "sms", patient.phone)


class HandoffError(Exception):
    """What a staff action on a hand-off can run into; the console and the API map each to a
    response (404, 409, 422) with this message."""

    def __init__(self, handoff_id: int, message: str) -> None:
        super().__init__(message)
        self.handoff_id = handoff_id
        self.message = message


class HandoffNotFound(HandoffError):
    def __init__(self, handoff_id: int) -> None:
        super().__init__(handoff_id, f"no hand-off with id {handoff_id}")


class HandoffClosed(HandoffError):
    def __init__(self, handoff_id: int) -> None:
        super().__init__(
            handoff_id, f"hand-off {handoff_id} is resolved: the bot has the conversation again"
        )


class EmptyText(HandoffError):
    def __init__(self, handoff_id: int, what: str) -> None:
        super().__init__(handoff_id, f"the {what} is empty; write something first")
        self.what = what


class NoChannel(HandoffError):
    """An unknown sender whose conversation is gone: there is nowhere to send a reply."""

    def __init__(self, handoff_id: int) -> None:
        super().__init__(handoff_id, "this hand-off has no patient channel to reply to")


def staff_reply(
    session: Session, handoff: Handoff, *, staff_id: int | None, text: str, now: datetime
) -> Message:
    """Send `text` to the patient through their channel, as the staff member."""

    if handoff.status != HandoffStatus.OPEN:
        raise HandoffClosed(handoff.id)
    text = text.strip()
    if not text:
        raise EmptyText(handoff.id, "reply")
    conv = conversation_of(session, handoff)
    if conv is None:
        raise NoChannel(handoff.id)
    body = html.escape(text, quote=False) if conv.channel == "telegram" else text
    message = outbox.enqueue(
        session,
        clinic_id=handoff.clinic_id,
        channel=conv.channel,
        address=conv.address,
        body=body,
        kind=Kind.STAFF,
        conversation_id=conv.id,
        patient_id=handoff.patient_id,
        handoff_id=handoff.id,
        staff_id=staff_id,
        # Not urgent: it must not overtake the bot's own message that said a person is coming.
        # (Quiet hours and caps only ever apply to proactive messages.)
        now=now,
    )
    if handoff.first_response_at is None:
        handoff.first_response_at = now
    if handoff.status == HandoffStatus.OPEN and handoff.assignee_id is None and staff_id:
        handoff.assignee_id = staff_id
    add_entry(session, handoff, "reply", text, staff_id=staff_id, message_id=message.id, now=now)
    return message


def take(session: Session, handoff: Handoff, *, staff_id: int, now: datetime) -> None:
    handoff.assignee_id = staff_id
    add_entry(session, handoff, "assign", staff_id=staff_id, now=now)


def add_note(
    session: Session, handoff: Handoff, *, staff_id: int | None, text: str, now: datetime
) -> None:
    if not text.strip():
        raise EmptyText(handoff.id, "note")
    add_entry(session, handoff, "note", text.strip(), staff_id=staff_id, now=now)


def resolve_and_return(
    session: Session, handoff: Handoff, *, staff_id: int | None, note: str | None, now: datetime
) -> None:
    """Close the hand-off and give the conversation back to the bot, with a clean slate."""

    if handoff.status != HandoffStatus.OPEN:
        raise HandoffClosed(handoff.id)
    resolve(session, handoff, staff_id=staff_id, note=note, now=now)
    if handoff.conversation_id is not None:
        conv = session.get(Conversation, handoff.conversation_id)
        if conv is not None:
            conv.unknown_streak = 0
            conv.clear_expectation()
            if conv.locked_at is not None:  # staff verified the person another way
                conv.locked_at = None
                conv.failed_verifications = 0
