"""Patients: who they are, how to reach them, and the queries the bot makes on every message."""

from __future__ import annotations

from datetime import date, datetime

import phonenumbers
from sqlalchemy import Boolean, Date, Index, String, func, select
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
    source_id: Mapped[str] = mapped_column(String(limits.SOURCE_ID), unique=True)
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

    __table_args__ = (Index("ix_patients_last_name_first_name", "last_name", "first_name"),)

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def by_source_id(session: Session, source_id: str) -> Patient | None:
    if len(source_id) > limits.SOURCE_ID or limits.unstorable(source_id):
        return None  # no such id can be stored, and PostgreSQL refuses a NUL in a query
    return session.scalars(select(Patient).where(Patient.source_id == source_id)).one_or_none()


def by_phone(session: Session, phone: str) -> list[Patient]:
    """Everyone who shares this number (a family phone), oldest record first."""
    return list(session.scalars(select(Patient).where(Patient.phone == phone).order_by(Patient.id)))


def by_email(session: Session, email: str) -> list[Patient]:
    """Everyone with this email (case-insensitive), oldest record first."""
    query = select(Patient).where(func.lower(Patient.email) == email.strip().lower())
    return list(session.scalars(query.order_by(Patient.id)))


def by_telegram_chat(session: Session, chat_id: str) -> list[Patient]:
    query = select(Patient).where(Patient.telegram_chat_id == chat_id).order_by(Patient.id)
    return list(session.scalars(query))


def by_address(session: Session, channel: str, address: str) -> list[Patient]:
    if channel == "telegram":
        return by_telegram_chat(session, address)
    return by_phone(session, address)


def any_patient(session: Session) -> bool:
    return session.scalars(select(Patient.id).limit(1)).first() is not None
