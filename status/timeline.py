"""The patient's timeline: every applied or stale event, every message, every staff action."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base, utcnow


class EntryKind(StrEnum):
    STATE_CHANGE = "state_change"  # an event applied
    STALE_EVENT = "stale_event"  # an event older than the state it would have changed
    MESSAGE_SENT = "message_sent"  # something the patient was told proactively
    REFILL_REQUESTED = "refill_requested"  # the patient asked for a refill through the bot
    HANDOFF = "handoff"  # a hand-off opened, replied to or resolved
    STUCK = "stuck"  # an item over its expected time in state
    PATIENT_ACTION = "patient_action"  # something done on the status page (changes["action"])


class TimelineEntry(Base):
    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str | None] = mapped_column(String(32))
    entity_source_id: Mapped[str | None] = mapped_column(String(128))
    event_id: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_timeline_entries_patient_id_occurred_at", "patient_id", "occurred_at"),
    )


def record(
    session: Session,
    patient_id: int,
    *,
    kind: EntryKind,
    occurred_at: datetime,
    summary: str,
    entity_type: str | None = None,
    entity_source_id: str | None = None,
    event_id: str | None = None,
    changes: dict[str, Any] | None = None,
) -> TimelineEntry:
    entry = TimelineEntry(
        patient_id=patient_id,
        kind=kind,
        occurred_at=occurred_at,
        summary=summary,
        entity_type=entity_type,
        entity_source_id=entity_source_id,
        event_id=event_id,
        changes=changes or {},
    )
    session.add(entry)
    return entry


def for_patient(session: Session, patient_id: int, limit: int = 50) -> list[TimelineEntry]:
    """Newest first."""
    query = (
        select(TimelineEntry)
        .where(TimelineEntry.patient_id == patient_id)
        .order_by(TimelineEntry.occurred_at.desc(), TimelineEntry.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def actions_on(session: Session, patient_id: int, action: str, entity_type: str) -> set[str]:
    """Source ids of the items a patient acted on this way (`PATIENT_ACTION` entries)."""
    query = select(TimelineEntry).where(
        TimelineEntry.patient_id == patient_id,
        TimelineEntry.kind == EntryKind.PATIENT_ACTION,
        TimelineEntry.entity_type == entity_type,
    )
    return {
        e.entity_source_id
        for e in session.scalars(query)
        if e.entity_source_id and (e.changes or {}).get("action") == action
    }
