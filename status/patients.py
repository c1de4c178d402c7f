"""Patients: who they are, how to reach them, and the queries the bot makes on every message."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime

import phonenumbers
from sqlalchemy import Boolean, Date, ForeignKey, Index, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.db import Base, utcnow


class InvalidPhone(ValueError):
    def __init__(self, raw: str) -> None:
        super().__init__("not a valid phone number")  # never the number: it may be a patient's
        self.raw = raw


def normalize_phone(raw: str, region: str = "US") -> str:
    """Any way a person writes a phone number -> E.164 (`+15550101234`)."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(raw) from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhone(raw)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    source_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID))
    first_name: Mapped[str] = mapped_column(String(limits.NAME))
    last_name: Mapped[str] = mapped_column(String(limits.NAME))
    date_of_birth: Mapped[date] = mapped_column(Date)
    phone: Mapped[str] = mapped_column(String(limits.E164), index=True)
    email: Mapped[str | None] = mapped_column(String(limits.EMAIL))
    language: Mapped[str] = mapped_column(String(5), default="en")
    timezone: Mapped[str] = mapped_column(String(limits.TIMEZONE), default="America/New_York")
    sms_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    telegram_chat_id: Mapped[str | None] = mapped_column(String(32), index=True)
    preferred_channel: Mapped[str] = mapped_column(String(16), default="sms")
    last_event_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # the same patient id (and phone) may be a patient of two clinics
        UniqueConstraint("clinic_id", "source_id"),
        Index("ix_patients_last_name_first_name", "last_name", "first_name"),
    )

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def by_source_id(session: Session, clinic_id: int, source_id: str) -> Patient | None:
    """The clinic's patient with this id (the same id in another clinic is someone else)."""
    if len(source_id) > limits.SOURCE_ID or limits.unstorable(source_id):
        return None  # no such id can be stored, and PostgreSQL refuses a NUL in a query
    query = select(Patient).where(Patient.clinic_id == clinic_id, Patient.source_id == source_id)
    return session.scalars(query).one_or_none()


def in_clinics(session: Session, clinic_ids: Collection[int], patient_id: int) -> Patient | None:
    """The patient with this row id if they belong to one of these clinics (a staff member's)."""
    patient = session.get(Patient, patient_id)
    return patient if patient is not None and patient.clinic_id in clinic_ids else None


def by_phone(session: Session, clinic_id: int, phone: str) -> list[Patient]:
    """Everyone at this clinic who shares this number (a family phone), oldest record first."""
    query = select(Patient).where(Patient.clinic_id == clinic_id, Patient.phone == phone)
    return list(session.scalars(query.order_by(Patient.id)))


def by_email(session: Session, clinic_id: int, email: str) -> list[Patient]:
    """Everyone at this clinic with this email (case-insensitive), oldest record first."""
    query = select(Patient).where(
        Patient.clinic_id == clinic_id, func.lower(Patient.email) == email.strip().lower()
    )
    return list(session.scalars(query.order_by(Patient.id)))


def by_telegram_chat(session: Session, clinic_id: int, chat_id: str) -> list[Patient]:
    query = select(Patient).where(
        Patient.clinic_id == clinic_id, Patient.telegram_chat_id == chat_id
    )
    return list(session.scalars(query.order_by(Patient.id)))


def by_address(session: Session, clinic_id: int, channel: str, address: str) -> list[Patient]:
    if channel == "telegram":
        return by_telegram_chat(session, clinic_id, address)
    return by_phone(session, clinic_id, address)


def any_patient(session: Session, clinic_id: int) -> bool:
    query = select(Patient.id).where(Patient.clinic_id == clinic_id).limit(1)
    return session.scalars(query).first() is not None


def source_ids(session: Session, ids: Collection[int | None]) -> dict[int, str]:
    """Patient row id -> the clinic's own patient id, for the ids given."""
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    query = select(Patient.id, Patient.source_id).where(Patient.id.in_(wanted))
    return {row.id: row.source_id for row in session.execute(query)}
