"""Staff actions on a hand-off: one set, for the console and the hand-off API alike.

Each action finds the hand-off within the actor's clinics (another clinic's is not found),
acts through `bot.handoffs`, and writes the audit row, in the caller's transaction. Failures are
typed (`HandoffNotFound`, `HandoffClosed`, `EmptyText`, `TextTooLong`, `NoChannel`) and carry
their data; the console turns them into a page or a flash message, the API into 404/409/422.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot import handoffs
from bot.handoffs import Handoff, HandoffClosed, HandoffError, HandoffStatus
from bot.messages import Message
from channels.staff import handoff_view, models

MAX_TEXT = 1600  # ten SMS segments: longer than any reply a patient should get by text
MAX_NOTE = 2000


class TextTooLong(HandoffError):
    def __init__(self, handoff_id: int, what: str, length: int, limit: int) -> None:
        super().__init__(
            handoff_id, f"the {what} is too long ({length} characters, at most {limit})"
        )
        self.what = what
        self.length = length
        self.limit = limit


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member (their clinics) or an API key (its one clinic)."""

    clinic_ids: Collection[int]
    staff_id: int | None = None
    name: str = "api"  # the audit's actor: "api" or "staff:3"

    @classmethod
    def api(cls, clinic_id: int) -> Actor:
        return cls((clinic_id,))


def _audit(session: Session, actor: Actor, action: str, handoff: Handoff, detail: str) -> None:
    models.audit(
        session, action, clinic_id=handoff.clinic_id, staff_id=actor.staff_id, actor=actor.name,
        patient_id=handoff.patient_id, handoff_id=handoff.id, detail=detail,
    )  # fmt: skip


def view(
    session: Session, actor: Actor, handoff_id: int, now: datetime, where: str
) -> handoff_view.Detail:
    """The hand-off with its context, recorded as viewed (`where`: "api", "hand-off page")."""
    detail = handoff_view.load(session, actor.clinic_ids, handoff_id, now)
    if detail is None:
        raise handoffs.HandoffNotFound(handoff_id)
    _audit(session, actor, "viewed", detail.handoff, where)
    return detail


def take(session: Session, actor: Actor, handoff_id: int, now: datetime) -> bool:
    """Assign it to the staff member; False when it was theirs already."""
    handoff = handoffs.get(session, actor.clinic_ids, handoff_id)
    if handoff.status != HandoffStatus.OPEN:
        raise HandoffClosed(handoff_id)
    if handoff.assignee_id == actor.staff_id or actor.staff_id is None:
        return False
    handoffs.take(session, handoff, staff_id=actor.staff_id, now=now)
    _audit(session, actor, "took", handoff, "")
    return True


def reply(session: Session, actor: Actor, handoff_id: int, text: str, now: datetime) -> Message:
    """Queue `text` to the patient through their channel (the outbox, this transaction)."""
    handoff = handoffs.get(session, actor.clinic_ids, handoff_id)
    if handoff.status != HandoffStatus.OPEN:
        raise HandoffClosed(handoff_id)
    if len(text) > MAX_TEXT:
        raise TextTooLong(handoff_id, "reply", len(text), MAX_TEXT)
    message = handoffs.staff_reply(session, handoff, staff_id=actor.staff_id, text=text, now=now)
    _audit(session, actor, "replied", handoff, f"message {message.id}: {text.strip()[:500]}")
    return message


def note(session: Session, actor: Actor, handoff_id: int, text: str, now: datetime) -> None:
    """A note for staff only (the patient never sees it)."""
    handoff = handoffs.get(session, actor.clinic_ids, handoff_id)
    if len(text) > MAX_NOTE:
        raise TextTooLong(handoff_id, "note", len(text), MAX_NOTE)
    handoffs.add_note(session, handoff, staff_id=actor.staff_id, text=text, now=now)
    _audit(session, actor, "noted", handoff, text.strip()[:500])


def resolve(
    session: Session, actor: Actor, handoff_id: int, note_text: str | None, now: datetime
) -> Handoff:
    """Close it and give the conversation back to the bot."""
    handoff = handoffs.get(session, actor.clinic_ids, handoff_id)
    note_text = (note_text or "").strip() or None
    handoffs.resolve_and_return(session, handoff, staff_id=actor.staff_id, note=note_text, now=now)
    _audit(session, actor, "resolved", handoff, (note_text or "")[:500])
    return handoff
