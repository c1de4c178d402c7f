"""Caregivers: someone who handles a patient's care for them (a parent, an adult child).

Staff add one to a patient with the topics they receive and whether they may ask questions.
A caregiver verifies with the patient's date of birth, like the patient; their own STOP stops
only their own messages (their conversation is their own address).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.alerts import Topic
from status.db import Base
from status.patients import InvalidPhone, Patient, normalize_phone

CHANNELS = ("sms", "telegram")
ACTIVE = text("removed_at IS NULL")


class Added(StrEnum):
    """What adding a caregiver did: a patient has one caregiver per channel address."""

    NEW = "new"
    UPDATED = "updated"  # already theirs: now with the name, relation, topics given
    UNCHANGED = "unchanged"  # already theirs, exactly as given (a redelivered request)


class CaregiverProblem(ValueError):
    """A caregiver that cannot be added as given; `field` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Caregiver(Base):
    __tablename__ = "caregivers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # the patient's clinic: the caregiver is written to from, and writes to, its number or bot
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(limits.NAME))
    relation: Mapped[str] = mapped_column(String(limits.NAME))
    channel: Mapped[str] = mapped_column(String(16))  # "sms" or "telegram"
    address: Mapped[str] = mapped_column(String(64))  # E.164 phone or Telegram chat id
    topics: Mapped[list[str]] = mapped_column(
        JSON, default=list
    )  # Topic values staff chose for them
    muted: Mapped[list[str]] = mapped_column(JSON, default=list)  # of those, what they turned off
    may_ask: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    removed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_caregivers_clinic_id_channel_address", "clinic_id", "channel", "address"),
        Index("ix_caregivers_patient_id", "patient_id"),  # a patient's caregivers (news)
        # one caregiver per address for a patient: adding them again finds this one
        Index(
            "ix_caregivers_patient_id_channel_address",
            "patient_id",
            "channel",
            "address",
            unique=True,
            postgresql_where=ACTIVE,
            sqlite_where=ACTIVE,
        ),
    )

    def receives(self, topic: Topic | None) -> bool:
        return topic is not None and topic.value in self.topics and topic.value not in self.muted

    @property
    def active_topics(self) -> list[str]:
        return [t for t in self.topics if t not in self.muted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "relation": self.relation,
            "channel": self.channel,
            "address": self.address,
            "topics": list(self.topics),
            "muted": list(self.muted),
            "may_ask_questions": self.may_ask,
        }


def parse_topics(values: list[str] | str) -> list[str]:
    if isinstance(values, str):
        values = [v for v in values.replace(",", " ").split() if v]
    unknown = [v for v in values if v not in Topic.__members__.values()]
    if unknown:
        known = ", ".join(t.value for t in Topic)
        raise CaregiverProblem("topics", f"unknown topic {unknown[0]!r}: use {known}")
    return [t.value for t in Topic if t.value in values]


def add(
    session: Session,
    patient: Patient,
    *,
    name: str,
    relation: str,
    channel: str,
    address: str,
    topics: list[str] | str,
    may_ask: bool,
    now: datetime,
    created_by: str,
) -> tuple[Caregiver, Added]:
    """Validate everything first, then write: nothing is half-added. Someone already the
    patient's caregiver at this address is not added twice: their row is updated to what was
    given (what they muted themselves stays muted) and returned."""
    name, relation, address = name.strip(), relation.strip(), address.strip()
    for field, value in (("name", name), ("relation", relation), ("address", address)):
        if limits.unstorable(value):
            raise CaregiverProblem(field, f"{field} holds characters that cannot be stored")
    if not name or len(name) > limits.NAME:
        raise CaregiverProblem("name", f"name is required (at most {limits.NAME} characters)")
    if not relation or len(relation) > limits.NAME:
        raise CaregiverProblem(
            "relation", f"relation is required, e.g. mother (at most {limits.NAME} characters)"
        )
    if channel not in CHANNELS:
        raise CaregiverProblem("channel", "channel must be 'sms' or 'telegram'")
    if channel == "sms":
        try:
            address = normalize_phone(address)
        except InvalidPhone as exc:
            raise CaregiverProblem("phone", "not a valid phone number") from exc
    else:
        digits = address.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()) or len(address) > 32:
            raise CaregiverProblem("telegram_chat_id", "a Telegram chat id is a number")
        address = str(int(address))  # as Telegram writes it: "0042" is chat 42
    chosen = parse_topics(topics)
    existing = _active(session, patient.id, channel, address)
    if existing is None:
        caregiver = Caregiver(
            clinic_id=patient.clinic_id, patient_id=patient.id, name=name, relation=relation,
            channel=channel, address=address, topics=chosen, muted=[], may_ask=may_ask,
            created_at=now, created_by=created_by[:64],
        )  # fmt: skip
        try:
            with session.begin_nested():
                session.add(caregiver)
                session.flush()
        except IntegrityError:  # the same request, a moment ago in another transaction
            existing = _active(session, patient.id, channel, address)
            if existing is None:
                raise
        else:
            return caregiver, Added.NEW
    given = (name, relation, chosen, may_ask)
    if (existing.name, existing.relation, existing.topics, existing.may_ask) == given:
        return existing, Added.UNCHANGED
    existing.name, existing.relation, existing.topics, existing.may_ask = given
    session.flush()
    return existing, Added.UPDATED


def _active(session: Session, patient_id: int, channel: str, address: str) -> Caregiver | None:
    query = select(Caregiver).where(
        Caregiver.patient_id == patient_id,
        Caregiver.channel == channel,
        Caregiver.address == address,
        Caregiver.removed_at.is_(None),
    )
    return session.scalars(query).one_or_none()


def for_patient(session: Session, clinic_id: int, patient_id: int) -> list[Caregiver]:
    query = select(Caregiver).where(
        Caregiver.clinic_id == clinic_id,
        Caregiver.patient_id == patient_id,
        Caregiver.removed_at.is_(None),
    )
    return list(session.scalars(query.order_by(Caregiver.id)))


def by_address(session: Session, clinic_id: int, channel: str, address: str) -> list[Caregiver]:
    """Everyone this address looks after at this clinic ("simulator" and "terminal" count as
    SMS). The same phone writing to another clinic's number is someone else there."""
    wire = "telegram" if channel == "telegram" else "sms"
    query = select(Caregiver).where(
        Caregiver.clinic_id == clinic_id,
        Caregiver.channel == wire,
        Caregiver.address == address,
        Caregiver.removed_at.is_(None),
    )
    return list(session.scalars(query.order_by(Caregiver.id)))


def by_id(session: Session, clinic_id: int, caregiver_id: int) -> Caregiver | None:
    carer = session.get(Caregiver, caregiver_id)
    return carer if carer is not None and carer.clinic_id == clinic_id else None


def remove(caregiver: Caregiver, now: datetime) -> None:
    caregiver.removed_at = now
