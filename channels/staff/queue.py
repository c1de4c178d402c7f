"""The staff queue: open hand-offs by priority then age, with their first-response timers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.conversations import Conversation
from bot.handoffs import (
    DEFAULT_SLA_MINUTES,
    PRIORITY_RANK,
    Handoff,
    HandoffStatus,
    Priority,
    Queue,
    list_handoffs,
)
from channels.staff import models
from channels.staff.times import duration
from channels.staff.words import reasons_words
from status.patients import Patient

ASSIGNEE_FILTERS = {"": "anyone", "mine": "mine", "unassigned": "unassigned"}
QUEUES = [q.value for q in Queue]
# Open hand-offs rarely number in the hundreds; read them all so the oldest are never cut off.
OPEN_LIMIT = 5000
SOON = timedelta(minutes=10)


@dataclass(frozen=True)
class Sla:
    label: str  # "due in 12 min", "late by 5 min", "answered in 3 min"
    level: str  # ok, soon, late, met, none
    late_by: str = ""  # "5 min" when no one replied within the target

    @property
    def late(self) -> bool:
        return self.level == "late"


def sla(handoff: Handoff, now: datetime) -> Sla:
    """The first-response timer: how long until (or since) a person must have replied."""
    if handoff.first_response_at is not None:
        took = (handoff.first_response_at - handoff.created_at).total_seconds()
        return Sla(f"answered in {duration(took)}", "met")
    if handoff.status != HandoffStatus.OPEN:
        return Sla("closed without a reply", "none")
    if handoff.first_response_due is None:
        return Sla("no target", "none")
    left = handoff.first_response_due - now
    if left < timedelta(0):
        late_by = duration(-left.total_seconds())
        return Sla(f"late by {late_by}", "late", late_by)
    window = handoff.first_response_due - handoff.created_at
    level = "soon" if left <= SOON or left <= window / 4 else "ok"
    return Sla(f"due in {duration(left.total_seconds())}", level)


def sla_targets(settings) -> str:
    """`urgent 5 min, high 30 min, normal 4 h` (SLA_MINUTES, else the hand-off defaults)."""
    minutes = getattr(settings, "sla_minutes", None) or DEFAULT_SLA_MINUTES
    return ", ".join(f"{p.value} {duration(60 * minutes[p])}" for p in Priority if p in minutes)


@dataclass(frozen=True)
class Row:
    handoff: Handoff
    who: str  # the patient's name, or the channel of an unknown sender
    patient_source_id: str | None
    channel: str
    assignee: str | None
    sla: Sla
    waiting_seconds: float

    @property
    def reasons(self) -> list[str]:
        return reasons_words(self.handoff.reasons, self.handoff.reason)


def _rows(session: Session, handoffs: list[Handoff], now: datetime) -> list[Row]:
    patient_ids = {h.patient_id for h in handoffs if h.patient_id}
    conv_ids = {h.conversation_id for h in handoffs if h.conversation_id}
    people = (
        {p.id: p for p in session.scalars(select(Patient).where(Patient.id.in_(patient_ids)))}
        if patient_ids
        else {}
    )
    convs = (
        {
            c.id: c
            for c in session.scalars(select(Conversation).where(Conversation.id.in_(conv_ids)))
        }
        if conv_ids
        else {}
    )
    staff = models.names(session, {h.assignee_id for h in handoffs})
    rows = []
    for h in handoffs:
        person = people.get(h.patient_id)
        conv = convs.get(h.conversation_id)
        channel = conv.channel if conv else "none"
        rows.append(
            Row(
                handoff=h,
                who=person.display_name if person else f"Unknown sender ({channel})",
                patient_source_id=person.source_id if person else None,
                channel=channel,
                assignee=staff.get(h.assignee_id) if h.assignee_id else None,
                sla=sla(h, now),
                waiting_seconds=(now - h.created_at).total_seconds(),
            )
        )
    return rows


def open_queue(
    session: Session,
    clinic_id: int,
    *,
    now: datetime,
    staff_id: int,
    queue: str = "",
    assignee: str = "",
) -> list[Row]:
    """The clinic's open hand-offs, most urgent first, then oldest first, filtered by queue and
    assignee."""
    handoffs = list_handoffs(session, [clinic_id], HandoffStatus.OPEN, limit=OPEN_LIMIT)
    if queue:
        handoffs = [h for h in handoffs if h.queue == queue]
    if assignee == "mine":
        handoffs = [h for h in handoffs if h.assignee_id == staff_id]
    elif assignee == "unassigned":
        handoffs = [h for h in handoffs if h.assignee_id is None]
    handoffs.sort(key=lambda h: (PRIORITY_RANK[Priority(h.priority)], h.created_at, h.id))
    return _rows(session, handoffs, now)


def open_counts(session: Session, clinic_id: int) -> dict[str, int]:
    """The clinic's open hand-offs per queue (every queue present, zeros included)."""
    counts = dict.fromkeys(QUEUES, 0)
    for h in list_handoffs(session, [clinic_id], HandoffStatus.OPEN, limit=OPEN_LIMIT):
        counts[h.queue] = counts.get(h.queue, 0) + 1
    return counts


def recently_resolved(
    session: Session, clinic_id: int, *, now: datetime, limit: int = 50
) -> list[Row]:
    query = (
        select(Handoff)
        .where(Handoff.clinic_id == clinic_id, Handoff.status == HandoffStatus.RESOLVED)
        .order_by(Handoff.resolved_at.desc(), Handoff.id.desc())
        .limit(limit)
    )
    return _rows(session, list(session.scalars(query)), now)


def for_patient(session: Session, patient_id: int, *, now: datetime) -> list[Row]:
    query = select(Handoff).where(Handoff.patient_id == patient_id).order_by(Handoff.id.desc())
    return _rows(session, list(session.scalars(query.limit(50))), now)
