"""Refills: the next fill of an existing prescription."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from sqlalchemy import Date, Enum, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
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


def for_patient(session: Session, patient_id: int) -> list[Refill]:
    query = select(Refill).where(Refill.patient_id == patient_id)
    return list(session.scalars(query.order_by(Refill.status_since.desc())))
