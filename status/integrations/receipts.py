"""What each integration delivered: one row per notification (a FHIR resource version, a Stripe
event), keyed by the source's own identity, so a redelivery is recognised and changes nothing;
and the links learned on the way (a FHIR Patient id or a Stripe customer -> our patient_id).
Both belong to a clinic: its FHIR server and its Stripe account are its own, so their ids are
unique per clinic (two clinics on Stripe may both see `cus_123` mean different people)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.db import Base, utcnow


class Source(StrEnum):
    FHIR = "fhir"
    STRIPE = "stripe"


class ReceiptOutcome(StrEnum):
    MAPPED = "mapped"  # turned into events (applied, stale or pending: the events table says)
    UNMAPPED = "unmapped"  # kept with the reason; staff see it on the operations page


class IntegrationReceipt(Base):
    __tablename__ = "integration_receipts"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    source: Mapped[str] = mapped_column(String(16))
    # "MedicationDispense/md-1/_history/3" or a Stripe event id: what makes a delivery the same
    key: Mapped[str] = mapped_column(String(limits.EVENT_ID))
    kind: Mapped[str] = mapped_column(String(64))  # resource type, or Stripe event type
    external_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID))
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)  # why it was not mapped (no PHI)
    event_ids: Mapped[list] = mapped_column(default=list)

    __table_args__ = (
        UniqueConstraint("clinic_id", "source", "key"),
        Index("ix_integration_receipts_clinic_id_outcome", "clinic_id", "outcome"),
    )


class IntegrationLink(Base):
    """An outside identity that stands for one of our patients."""

    __tablename__ = "integration_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID))  # "Patient/123", "cus_…"
    patient_source_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("clinic_id", "source", "external_id"),)


def known_keys(session: Session, clinic_id: int, source: str, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        query = select(IntegrationReceipt.key).where(
            IntegrationReceipt.clinic_id == clinic_id,
            IntegrationReceipt.source == source,
            IntegrationReceipt.key.in_(chunk),
        )
        found.update(session.scalars(query))
    return found


def link(session: Session, clinic_id: int, source: str, external_id: str) -> IntegrationLink | None:
    query = select(IntegrationLink).where(
        IntegrationLink.clinic_id == clinic_id,
        IntegrationLink.source == source,
        IntegrationLink.external_id == external_id,
    )
    return session.scalars(query).first()


def linked_patient(session: Session, clinic_id: int, source: str, external_id: str) -> str | None:
    """The clinic's patient_id an outside identity stands for, if learned."""
    found = link(session, clinic_id, source, external_id)
    return found.patient_source_id if found is not None else None


def unmapped(session: Session, clinic_id: int, limit: int = 50) -> list[IntegrationReceipt]:
    """The clinic's notifications we kept but could not use, newest first (operations page)."""
    query = (
        select(IntegrationReceipt)
        .where(
            IntegrationReceipt.clinic_id == clinic_id,
            IntegrationReceipt.outcome == ReceiptOutcome.UNMAPPED,
        )
        .order_by(IntegrationReceipt.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def for_source(session: Session, clinic_id: int, source: str) -> list[IntegrationReceipt]:
    query = select(IntegrationReceipt).where(
        IntegrationReceipt.clinic_id == clinic_id, IntegrationReceipt.source == source
    )
    return list(session.scalars(query.order_by(IntegrationReceipt.id)))
