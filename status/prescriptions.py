"""Prescriptions: from the provider's decision to the patient's door or pharmacy counter."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from sqlalchemy import Date, Enum, Index, Integer, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.classification import StatusClass, classify_all
from status.db import Base
from status.items import TrackedItem


class PrescriptionStatus(StrEnum):
    AWAITING_PROVIDER = "awaiting_provider"
    APPROVED = "approved"
    SENT_TO_PHARMACY = "sent_to_pharmacy"
    RECEIVED_BY_PHARMACY = "received_by_pharmacy"
    PROCESSING = "processing"
    SHIPPED = "shipped"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    BLOCKED = "blocked"
    DENIED = "denied"
    CANCELLED = "cancelled"


S = PrescriptionStatus
CLASSES = classify_all(
    PrescriptionStatus,
    {
        S.AWAITING_PROVIDER: StatusClass.ACTIVE,
        S.APPROVED: StatusClass.ACTIVE,
        S.SENT_TO_PHARMACY: StatusClass.ACTIVE,
        S.RECEIVED_BY_PHARMACY: StatusClass.ACTIVE,
        S.PROCESSING: StatusClass.ACTIVE,
        S.SHIPPED: StatusClass.ACTIVE,
        S.READY_FOR_PICKUP: StatusClass.NEEDS_PATIENT,
        S.DELIVERED: StatusClass.TERMINAL,
        S.BLOCKED: StatusClass.NEEDS_PATIENT,
        S.DENIED: StatusClass.TERMINAL,
        S.CANCELLED: StatusClass.TERMINAL,
    },
)


class Prescription(TrackedItem, Base):
    __tablename__ = "prescriptions"

    medication: Mapped[str] = mapped_column(String(limits.MEDICATION))
    status: Mapped[PrescriptionStatus] = mapped_column(
        Enum(
            PrescriptionStatus,
            native_enum=False,
            length=32,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    pharmacy_name: Mapped[str | None] = mapped_column(String(limits.PHARMACY_NAME))
    pharmacy_phone: Mapped[str | None] = mapped_column(String(limits.PHONE))
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    refills_remaining: Mapped[int | None] = mapped_column(Integer)
    next_refill_date: Mapped[date | None] = mapped_column(Date)

    @classmethod
    def more_indexes(cls) -> tuple[Index, ...]:
        # the scheduler's refill reminders (`refills_due`), every tick: only prescriptions
        # with a refill date, by that date
        with_date = text("next_refill_date IS NOT NULL")
        return (
            Index(
                "ix_prescriptions_clinic_id_next_refill_date",
                "clinic_id",
                "next_refill_date",
                postgresql_where=with_date,
                sqlite_where=with_date,
            ),
        )

    @property
    def status_class(self) -> StatusClass:
        return CLASSES[self.status]


# The snapshot's order (one definition for the tables and the read model): newest status first.
SNAPSHOT_ORDER = (Prescription.status_since.desc(), Prescription.id.desc())


def for_patient(session: Session, patient_id: int) -> list[Prescription]:
    query = select(Prescription).where(Prescription.patient_id == patient_id)
    return list(session.scalars(query.order_by(*SNAPSHOT_ORDER)))


def by_source_id(session: Session, clinic_id: int, source_id: str) -> Prescription | None:
    query = select(Prescription).where(
        Prescription.clinic_id == clinic_id, Prescription.source_id == source_id
    )
    return session.scalars(query).one_or_none()


# a refill can be due once the last fill reached the patient (or is on its way)
REFILL_FROM = (PrescriptionStatus.DELIVERED, PrescriptionStatus.SHIPPED,
               PrescriptionStatus.READY_FOR_PICKUP)  # fmt: skip


def refills_due(session: Session, clinic_id: int, since: date, until: date) -> list[int]:
    """Ids of the clinic's prescriptions whose next refill falls between the two dates."""
    query = select(Prescription.id).where(
        Prescription.clinic_id == clinic_id,
        Prescription.next_refill_date.is_not(None),
        Prescription.next_refill_date <= until,
        Prescription.next_refill_date >= since,
        Prescription.status.in_(REFILL_FROM),
    )
    return list(session.scalars(query))
