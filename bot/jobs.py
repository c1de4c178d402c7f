"""Once-only keys for scheduled work, so several workers never send the same reminder twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, Session, mapped_column

from status.db import Base, insert_ignore, utcnow


class JobRun(Base):
    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # e.g. refill_due:rx-1:2026-12-10
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def claim_once(session: Session, key: str) -> bool:
    """True for exactly one caller per key, across processes."""
    return insert_ignore(session, JobRun.__table__, {"key": key, "created_at": utcnow()})
