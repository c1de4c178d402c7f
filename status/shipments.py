"""Shipments: a carrier moving a prescription to the patient."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from sqlalchemy import Date, Enum, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.classification import StatusClass, classify_all
from status.db import Base
from status.items import TrackedItem


class ShipmentStatus(StrEnum):
    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    RETURNED = "returned"


S = ShipmentStatus
CLASSES = classify_all(
    ShipmentStatus,
    {
        S.LABEL_CREATED: StatusClass.ACTIVE,
        S.IN_TRANSIT: StatusClass.ACTIVE,
        S.OUT_FOR_DELIVERY: StatusClass.ACTIVE,
        S.DELIVERED: StatusClass.TERMINAL,
        S.EXCEPTION: StatusClass.ACTIVE,
        S.RETURNED: StatusClass.TERMINAL,
    },
)


class Shipment(TrackedItem, Base):
    __tablename__ = "shipments"

    prescription_source_id: Mapped[str | None] = mapped_column(String(limits.SOURCE_ID), index=True)
    carrier: Mapped[str] = mapped_column(String(limits.CARRIER))
    tracking_number: Mapped[str] = mapped_column(String(limits.TRACKING_NUMBER))
    tracking_url: Mapped[str | None] = mapped_column(String(limits.URL))
    status: Mapped[ShipmentStatus] = mapped_column(
        Enum(
            ShipmentStatus,
            native_enum=False,
            length=32,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    estimated_delivery: Mapped[date | None] = mapped_column(Date)

    @property
    def status_class(self) -> StatusClass:
        return CLASSES[self.status]


# The snapshot's order (one definition for the tables and the read model): newest status first.
SNAPSHOT_ORDER = (Shipment.status_since.desc(), Shipment.id.desc())


def for_patient(session: Session, patient_id: int) -> list[Shipment]:
    query = select(Shipment).where(Shipment.patient_id == patient_id)
    return list(session.scalars(query.order_by(*SNAPSHOT_ORDER)))


def latest_for_prescription(
    session: Session, clinic_id: int, patient_id: int, prescription_source_id: str
) -> Shipment | None:
    """The patient's shipment of this prescription that changed status last (another patient's
    shipment naming the same prescription id, a source system's mistake, is never theirs)."""
    query = (
        select(Shipment)
        .where(
            Shipment.clinic_id == clinic_id,
            Shipment.patient_id == patient_id,
            Shipment.prescription_source_id == prescription_source_id,
        )
        .order_by(Shipment.status_since.desc())
        .limit(1)
    )
    return session.scalars(query).first()
