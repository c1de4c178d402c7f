"""A conversation is one channel address (a phone number, a Telegram chat) talking to the clinic.

It remembers who is talking (a shared phone may belong to several patients), whether they have
verified, what the bot last asked and until when the answer is expected, and the address's
consent state (STOP/START).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base, insert_ignore, utcnow
from status.patients import Patient

AWAIT_TTL = timedelta(minutes=30)


class Awaiting(StrEnum):
    """What the bot asked last, so the next message is read as the answer to it."""

    DOB = "dob"
    WHICH_PATIENT = "which_patient"
    REFILL_CONFIRM = "refill_confirm"
    APPOINTMENT_REPLY = "appointment_reply"


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    channel: Mapped[str] = mapped_column(String(16))  # "sms", "telegram", "simulator"
    address: Mapped[str] = mapped_column(String(64))  # E.164 phone or Telegram chat id
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="SET NULL"))
    verified_patient_id: Mapped[int | None] = mapped_column(
        ForeignKey("patients.id", ondelete="SET NULL")
    )
    verified_until: Mapped[datetime | None]
    failed_verifications: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[datetime | None]
    awaiting: Mapped[str | None] = mapped_column(String(32))  # dob, which_patient, refill_confirm
    awaiting_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    awaiting_until: Mapped[datetime | None]
    unknown_streak: Mapped[int] = mapped_column(Integer, default=0)
    language: Mapped[str | None] = mapped_column(String(5))
    opted_out: Mapped[bool] = mapped_column(default=False)
    opted_out_at: Mapped[datetime | None]
    bad_address: Mapped[bool] = mapped_column(default=False)
    bad_address_reason: Mapped[str | None] = mapped_column(String(200))
    last_inbound_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # One phone texting two clinics' numbers is two conversations.
    __table_args__ = (
        UniqueConstraint("clinic_id", "channel", "address"),
        Index("ix_conversations_patient_id", "patient_id"),  # a patient's (staff pages)
    )

    def is_verified(self, patient_id: int | None, now: datetime) -> bool:
        return (
            patient_id is not None
            and self.verified_patient_id == patient_id
            and self.verified_until is not None
            and self.verified_until > now
        )

    def expect(
        self, what: Awaiting, now: datetime, ttl: timedelta = AWAIT_TTL, **data: object
    ) -> None:
        self.awaiting = what
        self.awaiting_data = data
        self.awaiting_until = now + ttl

    def expected(self, now: datetime) -> Awaiting | None:
        if self.awaiting and self.awaiting_until and self.awaiting_until > now:
            return Awaiting(self.awaiting)
        return None

    def clear_expectation(self) -> None:
        self.awaiting = None
        self.awaiting_data = {}
        self.awaiting_until = None


def _at(clinic_id: int, channel: str, address: str) -> Select[Conversation]:
    return select(Conversation).where(
        Conversation.clinic_id == clinic_id,
        Conversation.channel == channel,
        Conversation.address == address,
    )


def take_verification_try(session: Session, conv: Conversation, most: int) -> int | None:
    """Take one of the address's `most` date-of-birth tries, in one statement: the tries taken
    so far with this one, or None when the address is locked or has none left.

    The conversation's count is the one the SMS and Telegram verification keep, so the status
    page and the conversation share three tries; taking a try before the date is compared means
    tries sent at once cannot all be compared (the row is locked until the transaction ends).
    A right date gives the try back (`failed_verifications` back to 0)."""
    taken = session.execute(
        update(Conversation)
        .where(
            Conversation.id == conv.id,
            Conversation.locked_at.is_(None),
            Conversation.failed_verifications < most,
        )
        .values(failed_verifications=Conversation.failed_verifications + 1)
        .execution_options(synchronize_session=False)
    )
    session.refresh(conv, ["failed_verifications", "locked_at"])
    return conv.failed_verifications if taken.rowcount else None  # type: ignore[attr-defined]


def get_or_create(session: Session, clinic_id: int, channel: str, address: str) -> Conversation:
    """The conversation of an address with a clinic, created on first contact (safe under
    concurrency). The same phone texting two clinics is two conversations."""
    query = _at(clinic_id, channel, address)
    conversation = session.scalars(query).one_or_none()
    if conversation is None:
        insert_ignore(
            session,
            Conversation.__table__,
            {
                "clinic_id": clinic_id,
                "channel": channel,
                "address": address,
                "failed_verifications": 0,
                "unknown_streak": 0,
                "opted_out": False,
                "bad_address": False,
                "awaiting_data": {},
                "created_at": utcnow(),
                "updated_at": utcnow(),
            },
        )
        conversation = session.scalars(query).one()
    return conversation


def find(session: Session, clinic_id: int, channel: str, address: str) -> Conversation | None:
    return session.scalars(_at(clinic_id, channel, address)).one_or_none()


def at_addresses(
    session: Session, clinic_id: int, addresses: list[str], channels: tuple[str, ...]
) -> dict[tuple[str, str], Conversation]:
    """(channel, address) -> the clinic's conversation, for these addresses on these channels."""
    query = select(Conversation).where(
        Conversation.clinic_id == clinic_id,
        Conversation.address.in_(addresses),
        Conversation.channel.in_(channels),
    )
    return {(conv.channel, conv.address): conv for conv in session.scalars(query)}


def for_patient(session: Session, patient_id: int) -> list[Conversation]:
    query = select(Conversation).where(Conversation.patient_id == patient_id)
    return list(session.scalars(query.order_by(Conversation.last_inbound_at.desc())))


def patient_address(patient: Patient) -> tuple[str, str]:
    """(channel, address) where the patient talks to us: Telegram when linked and preferred."""
    if patient.preferred_channel == "telegram" and patient.telegram_chat_id:
        return "telegram", patient.telegram_chat_id
    return "sms", patient.phone
