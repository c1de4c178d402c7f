"""Inbound webhook receipts keyed by the provider's id: a redelivery is recognised and ignored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base, insert_ignore, utcnow


class Receipt(Base):
    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # "twilio_sms", "twilio_status", "telegram"
    provider_id: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("source", "provider_id"),)


def record(session: Session, source: str, provider_id: str) -> bool:
    """True the first time this delivery is seen; False for a redelivery."""
    return insert_ignore(
        session,
        Receipt.__table__,
        {"source": source, "provider_id": provider_id, "received_at": utcnow()},
    )


def seen(session: Session, source: str, provider_id: str) -> Receipt | None:
    query = select(Receipt).where(Receipt.source == source, Receipt.provider_id == provider_id)
    return session.scalars(query).one_or_none()
