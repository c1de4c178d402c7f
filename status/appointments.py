"""Appointments: visits with the care team."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.classification import StatusClass, classify_all
from status.db import Base
from status.items import TrackedItem


class AppointmentStatus(StrEnum):
    SCHEDULED = "scheduled"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


S = AppointmentStatus
CLASSES = classify_all(
    AppointmentStatus,
    {
        S.SCHEDULED: StatusClass.NEEDS_PATIENT,
        S.CONFIRMED: StatusClass.ACTIVE,
        S.CANCELLED: StatusClass.TERMINAL,
        S.COMPLETED: StatusClass.TERMINAL,
        S.NO_SHOW: StatusClass.TERMINAL,
    },
)
UPCOMING = (S.SCHEDULED, S.CONFIRMED)


class Appointment(TrackedItem, Base):
    __tablename__ = "appointments"

    starts_at: Mapped[datetime] = mapped_column(index=True)
    visit_type: Mapped[str] = mapped_column(String(limits.VISIT_TYPE))
    provider_name: Mapped[str | None] = mapped_column(String(limits.PROVIDER_NAME))
    status: Mapped[AppointmentStatus] = mapped_column(
        Enum(
            AppointmentStatus,
            native_enum=False,
            length=32,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    join_url: Mapped[str | None] = mapped_column(String(limits.URL))

    @property
    def status_class(self) -> StatusClass:
        return CLASSES[self.status]


def for_patient(session: Session, patient_id: int) -> list[Appointment]:
    query = select(Appointment).where(Appointment.patient_id == patient_id)
    return list(session.scalars(query.order_by(Appointment.starts_at)))


# What the snapshot shows (one definition for the tables and the read model): visits still to
# happen, soonest first; which of them are still ahead is decided against the clock on read.
SNAPSHOT_FILTER = Appointment.status.in_(UPCOMING)
SNAPSHOT_ORDER = (Appointment.starts_at, Appointment.id)


def upcoming_for(session: Session, patient_id: int, now: datetime) -> list[Appointment]:
    query = select(Appointment).where(
        Appointment.patient_id == patient_id, Appointment.starts_at >= now, SNAPSHOT_FILTER
    )
    return list(session.scalars(query.order_by(*SNAPSHOT_ORDER)))


def starting(session: Session, clinic_id: int, after: datetime, until: datetime) -> list[int]:
    """Ids of the clinic's upcoming appointments starting in (after, until]."""
    query = select(Appointment.id).where(
        Appointment.clinic_id == clinic_id,
        Appointment.status.in_(UPCOMING),
        Appointment.starts_at > after,
        Appointment.starts_at <= until,
    )
    return list(session.scalars(query))
