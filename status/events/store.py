"""Every event received, keyed by its `id`: the idempotency record and the pending queue."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.db import Base, utcnow


class Outcome(StrEnum):
    APPLIED = "applied"
    STALE = "stale"
    PENDING = "pending"  # waiting for its patient to arrive


class StoredEvent(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    event_id: Mapped[str] = mapped_column(String(limits.EVENT_ID))
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    patient_source_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID))
    entity_source_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID))
    payload: Mapped[dict]
    outcome: Mapped[str] = mapped_column(String(16))
    applied_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("clinic_id", "event_id"),
        Index("ix_events_patient_source_id_outcome", "patient_source_id", "outcome"),
    )


def known_ids(session: Session, clinic_id: int, event_ids: list[str]) -> set[str]:
    if not event_ids:
        return set()
    found: set[str] = set()
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start : start + 500]
        query = select(StoredEvent.event_id).where(
            StoredEvent.clinic_id == clinic_id, StoredEvent.event_id.in_(chunk)
        )
        found.update(session.scalars(query))
    return found


def pending_for(session: Session, clinic_id: int, patient_source_id: str) -> list[StoredEvent]:
    query = (
        select(StoredEvent)
        .where(
            StoredEvent.clinic_id == clinic_id,
            StoredEvent.patient_source_id == patient_source_id,
            StoredEvent.outcome == Outcome.PENDING,
        )
        .order_by(StoredEvent.occurred_at, StoredEvent.id)
    )
    return list(session.scalars(query))


def pending_for_many(
    session: Session, clinic_id: int, patient_source_ids: list[str]
) -> list[StoredEvent]:
    """`pending_for` for many patients at once (one query per 500 ids), each in time order."""
    found: list[StoredEvent] = []
    for start in range(0, len(patient_source_ids), 500):
        chunk = patient_source_ids[start : start + 500]
        query = (
            select(StoredEvent)
            .where(
                StoredEvent.clinic_id == clinic_id,
                StoredEvent.patient_source_id.in_(chunk),
                StoredEvent.outcome == Outcome.PENDING,
            )
            .order_by(StoredEvent.occurred_at, StoredEvent.id)
        )
        found.extend(session.scalars(query))
    return found
