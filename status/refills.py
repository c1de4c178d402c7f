"""Refills: the next fill of an existing prescription."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Date, Enum, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits, timeline
from status.classification import StatusClass, classify_all
from status.db import Base
from status.items import TrackedItem


class RefillStatus(StrEnum):
    REQUESTED = "requested"
    PROVIDER_REVIEW = "provider_review"
    APPROVED = "approved"
    SENT_TO_PHARMACY = "sent_to_pharmacy"
    SHIPPED = "shipped"
    READY_FOR_PICKUP = "ready_for_pickup"
    WAITING_ON_PATIENT = "waiting_on_patient"
    DENIED = "denied"


S = RefillStatus
CLASSES = classify_all(
    RefillStatus,
    {
        S.REQUESTED: StatusClass.ACTIVE,
        S.PROVIDER_REVIEW: StatusClass.ACTIVE,
        S.APPROVED: StatusClass.ACTIVE,
        S.SENT_TO_PHARMACY: StatusClass.ACTIVE,
        S.SHIPPED: StatusClass.TERMINAL,
        S.READY_FOR_PICKUP: StatusClass.NEEDS_PATIENT,
        S.WAITING_ON_PATIENT: StatusClass.NEEDS_PATIENT,
        S.DENIED: StatusClass.TERMINAL,
    },
)


class Refill(TrackedItem, Base):
    __tablename__ = "refills"

    prescription_source_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID), index=True)
    status: Mapped[RefillStatus] = mapped_column(
        Enum(
            RefillStatus,
            native_enum=False,
            length=32,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    due_date: Mapped[date | None] = mapped_column(Date)
    # "clinic" when the clinic's system reported it, "patient" when the patient asked the bot.
    origin: Mapped[str] = mapped_column(String(16), default="clinic")

    @property
    def status_class(self) -> StatusClass:
        return CLASSES[self.status]


# The snapshot's order (one definition for the tables and the read model): newest status first.
SNAPSHOT_ORDER = (Refill.status_since.desc(), Refill.id.desc())


def for_patient(session: Session, patient_id: int) -> list[Refill]:
    query = select(Refill).where(Refill.patient_id == patient_id)
    return list(session.scalars(query.order_by(*SNAPSHOT_ORDER)))


def request_by_patient(
    session: Session,
    patient_id: int,
    *,
    clinic_id: int,
    prescription_source_id: str,
    due_date: date | None,
    channel: str,
    now: datetime,
) -> Refill:
    """A refill the patient asked for (a YES to the offer, the status page): a `requested`
    refill of our own making and its timeline entry. The provider reviews every request."""
    refill = Refill(
        clinic_id=clinic_id,
        source_id=f"bot-{uuid.uuid4().hex[:16]}",
        patient_id=patient_id,
        prescription_source_id=prescription_source_id,
        status=RefillStatus.REQUESTED,
        due_date=due_date,
        origin="patient",
        status_since=now,
        last_event_at=now,
    )
    session.add(refill)
    # A real cycle (the read model reads this module's table), hence the import here.
    from status import read_model

    read_model.refresh(session, [patient_id], now)  # the patient's snapshot shows it at once
    timeline.record(
        session,
        patient_id,
        kind=timeline.EntryKind.REFILL_REQUESTED,
        occurred_at=now,
        summary=f"patient asked for a refill by {channel}",
        entity_type="refill",
        entity_source_id=refill.source_id,
    )
    return refill


def for_prescription(
    session: Session, clinic_id: int, patient_id: int, prescription_source_id: str
) -> list[Refill]:
    """The patient's refills of this prescription (only theirs: see `latest_for_prescription`)."""
    query = select(Refill).where(
        Refill.clinic_id == clinic_id,
        Refill.patient_id == patient_id,
        Refill.prescription_source_id == prescription_source_id,
    )
    return list(session.scalars(query))
