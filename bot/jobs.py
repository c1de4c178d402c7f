"""Once-only keys for scheduled work, so several workers never send the same reminder twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.clinics import DEFAULT_ID
from status.db import Base, insert_ignore, utcnow


class JobRun(Base):
    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    key: Mapped[str] = mapped_column(String(200), unique=True)  # e.g. refill_due:rx-1:2026-12-10
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def claim_once(session: Session, clinic_id: int, key: str) -> bool:
    """True for exactly one caller per key, across processes. Keys name source ids, which are
    the clinic's own, so the clinic is part of the key (not the default clinic's: its keys
    were written before there were clinics, and a reminder sent then must stay sent)."""
    if clinic_id != DEFAULT_ID:
        key = f"{clinic_id}:{key}"
    return insert_ignore(
        session, JobRun.__table__, {"clinic_id": clinic_id, "key": key, "created_at": utcnow()}
    )
